// Shapes of glm-lsp's commands and notifications (the README's LSP commands). The types come from
// wire.ts, generated from the server's Python models; this module adds names the extension uses.
// No vscode import: the pure modules and their tests share these types.

import type { ExplainArgs, StreamNotification } from './wire';

export type {
  AnswerResult,
  AskArgs,
  EditChange,
  EditReply,
  EditResult,
  ExplainArgs,
  FixArgs,
  Position,
  Range,
  RefactorArgs,
  Stats,
  StatusResult,
  StreamNotification,
  ThinkingTurn,
  Verification,
} from './wire';

export type Thinking = Exclude<NonNullable<ExplainArgs['thinking']>, boolean>;

export type StreamKind = StreamNotification['kind'];

export const STREAM_METHOD = 'glm/stream';

/** Server commands whose results the client presents to the user. */
export const ANSWER_COMMANDS = new Set(['glm.explain', 'glm.ask']);
export const EDIT_COMMANDS = new Set(['glm.refactor', 'glm.fix', 'glm.retry']);
