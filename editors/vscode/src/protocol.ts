// Shapes of glm-lsp's commands and notifications (the README's LSP commands). No vscode import: the pure
// modules and their tests share these types.

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export type Thinking = 'auto' | 'enabled' | 'disabled';

export interface Stats {
  promptTokens?: number;
  reusedTokens?: number;
  prefilledTokens?: number;
  generatedTokens?: number;
  ttftMs?: number;
  decodeTps?: number;
  draftTokens?: number;
  draftAcceptedTokens?: number;
}

export interface ExplainArgs {
  uri: string;
  range?: Range;
  question?: string;
  thinking?: Thinking;
}

export interface RefactorArgs {
  uri: string;
  range?: Range;
  instruction: string;
  thinking?: Thinking;
}

export interface FixArgs {
  uri: string;
  range: Range;
  thinking?: Thinking;
}

export interface AskArgs {
  question: string;
  uri?: string;
  thinking?: Thinking;
}

/** Result of glm.explain and glm.ask. */
export interface AnswerResult {
  text: string;
  /** One entry per completion that reasoned (interleaved thinking), as the server sends it. */
  reasoning: string[];
  turn: number;
  stats?: Stats;
}

/** One item of an edit result's `changes`; `applied`/`hunks` after a reviewed edit. */
export interface EditChange {
  uri: string;
  kind: string;
  sensitive?: boolean;
  /** Whether the change landed (the user may have left it in the Refactor Preview). */
  applied?: boolean;
  /** For a file edit taken only in part: how many of its hunks landed. */
  hunks?: { applied: number; total: number };
}

/** Result of glm.refactor and glm.fix. */
export interface EditResult {
  applied: boolean;
  changes: EditChange[];
  summary: string;
  turn: number;
  stats?: Stats;
  failureReason?: string;
  /** verifyCommand's outcome on the edit (exitCode null: it could not run). */
  verification?: Verification;
}

export interface Verification {
  command: string;
  exitCode: number | null;
  summary: string;
}

export interface StatusResult {
  backend: string;
  model: string;
  busy: boolean;
  queued: number;
  turns: number;
  stats?: Stats;
}

export interface ThinkingTurn {
  turn: number;
  command: string;
  thinking: string;
  reasoning: string[];
  summary: string;
}

export type StreamKind = 'reasoning' | 'content' | 'tool_call' | 'tool_result';

export interface StreamNotification {
  turn: number;
  kind: StreamKind;
  text: string;
}

export const STREAM_METHOD = 'glm/stream';

/** Server commands whose results the client presents to the user. */
export const ANSWER_COMMANDS = new Set(['glm.explain', 'glm.ask']);
export const EDIT_COMMANDS = new Set(['glm.refactor', 'glm.fix', 'glm.retry']);
