// glm/stream notifications -> text for the output channel. Pure: formatting and coalescing are
// unit-tested; the extension only wires the result to OutputChannel.append.

import type { StreamKind, StreamNotification } from './protocol';

const KINDS = new Set<StreamKind>(['reasoning', 'content', 'tool_call', 'tool_result']);

export const REASONING_PREFIX = '  │ ';
export const TOOL_CALL_PREFIX = '  ▸ ';
export const TOOL_RESULT_PREFIX = '  ◂ ';
const ONE_LINE_MAX = 160;

/** Accepts only well-formed notifications: the server is another process, so check its input. */
export function asStreamNotification(value: unknown): StreamNotification | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { turn, kind, text } = value as Record<string, unknown>;
  if (typeof turn !== 'number' || typeof text !== 'string' || !KINDS.has(kind as StreamKind)) return undefined;
  return { turn, kind: kind as StreamKind, text };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A tool call on one line: whitespace (including the newlines of JSON arguments) collapsed. */
export function toolCallLine(text: string): string {
  return truncate(text.replace(/\s+/g, ' ').trim(), ONE_LINE_MAX);
}

/** A tool result on one line: its first non-empty line and how many lines followed. */
export function toolResultLine(text: string): string {
  const lines = text.replace(/\s+$/, '').split('\n');
  const first = lines.findIndex((l) => l.trim() !== '');
  if (first < 0) return '(empty)';
  const rest = lines.length - first - 1;
  return truncate(lines[first].trim(), ONE_LINE_MAX) + (rest > 0 ? ` (+${rest} lines)` : '');
}

/**
 * Turns a sequence of deltas into readable text: a header per turn, reasoning with every line
 * prefixed, content as is, one line per tool call/result. Consecutive deltas of one kind form
 * one section, so a prefix is written once per line, not once per delta.
 */
export class StreamFormatter {
  private turn: number | undefined;
  private kind: StreamKind | undefined;
  private atLineStart = true;
  private sectionFresh = true; // no text written in the current section yet
  private readonly contentTurns = new Set<number>();

  push(n: StreamNotification): string {
    let out = '';
    if (n.turn !== this.turn) {
      out += this.endLine() + `\n── GLM turn ${n.turn} ──\n`;
      this.turn = n.turn;
      this.kind = undefined;
    }
    if (n.kind === 'tool_call' || n.kind === 'tool_result') {
      const line = n.kind === 'tool_call' ? TOOL_CALL_PREFIX + toolCallLine(n.text) : TOOL_RESULT_PREFIX + toolResultLine(n.text);
      this.kind = n.kind;
      return out + this.endLine() + line + '\n';
    }
    if (n.kind !== this.kind) {
      // A blank line between thinking and the answer; tool lines already end their own line.
      out += this.endLine() + (this.kind === 'reasoning' ? '\n' : '');
      this.kind = n.kind;
      this.sectionFresh = true;
    }
    // Models open sections with newlines (e.g. after </think>): drop them, keep inner ones.
    const text = this.sectionFresh ? n.text.replace(/^\n+/, '') : n.text;
    if (text === '') return out;
    this.sectionFresh = false;
    if (n.kind === 'content') {
      this.contentTurns.add(n.turn);
      this.atLineStart = text.endsWith('\n');
      return out + text;
    }
    return out + this.prefixed(text, REASONING_PREFIX);
  }

  /** Text that ends the stream cleanly (a final newline if a line is open). */
  end(): string {
    this.kind = undefined;
    return this.endLine();
  }

  /** Whether the answer of `turn` was already streamed, so the result need not repeat it. */
  streamedContent(turn: number): boolean {
    return this.contentTurns.has(turn);
  }

  private endLine(): string {
    if (this.atLineStart) return '';
    this.atLineStart = true;
    return '\n';
  }

  private prefixed(text: string, prefix: string): string {
    let out = '';
    text.split('\n').forEach((part, i) => {
      if (i > 0) {
        out += '\n';
        this.atLineStart = true;
      }
      if (part === '') return;
      if (this.atLineStart) out += prefix;
      out += part;
      this.atLineStart = false;
    });
    return out;
  }
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * Batches many small deltas into few writes: each OutputChannel.append is a message to the
 * renderer, and models stream a token at a time.
 */
export class Coalescer {
  private buffer = '';
  private timer: unknown;

  constructor(
    private readonly sink: (text: string) => void,
    private readonly delayMs = 50,
    private readonly maxChars = 4096,
    private readonly timers: Timers = realTimers,
  ) {}

  push(text: string): void {
    if (text === '') return;
    this.buffer += text;
    if (this.buffer.length >= this.maxChars) this.flush();
    else if (this.timer === undefined) this.timer = this.timers.setTimeout(() => this.flush(), this.delayMs);
  }

  flush(): void {
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.buffer === '') return;
    const text = this.buffer;
    this.buffer = '';
    this.sink(text);
  }

  dispose(): void {
    this.flush();
  }
}
