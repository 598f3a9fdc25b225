// The "GLM" output channel: streamed reasoning/answers and one-line reports of results.

import * as vscode from 'vscode';
import { asStreamNotification, Coalescer, StreamFormatter } from './stream';

export class GlmOutput implements vscode.Disposable {
  private readonly channel = vscode.window.createOutputChannel('GLM');
  private readonly formatter = new StreamFormatter();
  private readonly coalescer = new Coalescer((text) => this.channel.append(text));

  /** Appends a glm/stream notification; false when it was malformed and ignored. */
  stream(params: unknown): boolean {
    const n = asStreamNotification(params);
    if (!n) return false;
    this.coalescer.push(this.formatter.push(n));
    return true;
  }

  /** Appends a report, starting on a fresh line after any streamed text. */
  write(text: string): void {
    this.coalescer.push(this.formatter.end() + text + (text.endsWith('\n') ? '' : '\n'));
  }

  streamedContent(turn: number): boolean {
    return this.formatter.streamedContent(turn);
  }

  show(preserveFocus = true): void {
    this.channel.show(preserveFocus);
  }

  dispose(): void {
    this.coalescer.dispose();
    this.channel.dispose();
  }
}
