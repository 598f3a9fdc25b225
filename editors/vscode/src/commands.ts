// The GLM commands: palette commands build the command arguments (README: LSP commands) from the editor, code
// actions arrive through the client middleware; both go through `run`, which tracks busy state
// and shows the result.

import * as vscode from 'vscode';
import { ExecuteCommandRequest, LanguageClient, LSPErrorCodes, ResponseError } from 'vscode-languageclient/node';
import type { ReadOnlyDocs } from './docs';
import { answerDocument, editMessage, editReport, firstLine, formatStats, statusMessage, thinkingDocument, undoMessage } from './format';
import type { GlmOutput } from './output';
import {
  ANSWER_COMMANDS,
  EDIT_COMMANDS,
  type AnswerResult,
  type EditResult,
  type Range,
  type StatusResult,
  type ThinkingTurn,
} from './protocol';
import type { StatusBar } from './status';

type Arg = Record<string, unknown>;

export class GlmCommands {
  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly out: GlmOutput,
    private readonly status: StatusBar,
    private readonly docs: ReadOnlyDocs,
  ) {}

  register(): vscode.Disposable[] {
    const commands: Record<string, () => unknown> = {
      'glm-lsp.explain': () => this.explain(),
      'glm-lsp.refactor': () => this.refactor(),
      'glm-lsp.fix': () => this.fix(),
      'glm-lsp.ask': () => this.ask(),
      'glm-lsp.cancel': () => this.cancel(),
      'glm-lsp.showThinking': () => this.showThinking(),
      'glm-lsp.status': () => this.showStatus(),
      'glm-lsp.undo': () => this.undo(),
      'glm-lsp.retry': () => this.run('glm.retry', {}),
      'glm-lsp.resetThinking': () => this.resetThinking(),
      'glm-lsp.showOutput': () => this.out.show(false),
    };
    return Object.entries(commands).map(([id, fn]) => vscode.commands.registerCommand(id, fn));
  }

  /**
   * Client middleware for server commands run from code actions. `GLM: Refactor…` carries no
   * instruction, so ask for it here; the result is then shown like a palette command's.
   */
  async intercept(command: string, args: unknown[]): Promise<unknown> {
    let arg: Arg = typeof args[0] === 'object' && args[0] !== null ? { ...(args[0] as Arg) } : {};
    if (command === 'glm.refactor' && !nonEmpty(arg.instruction)) {
      const instruction = await askInstruction();
      if (!instruction) return undefined;
      arg = { ...arg, instruction };
    }
    if (command === 'glm.ask' && !nonEmpty(arg.question)) {
      const question = await askQuestion();
      if (!question) return undefined;
      arg = { ...arg, question };
    }
    return ANSWER_COMMANDS.has(command) || EDIT_COMMANDS.has(command) ? this.run(command, arg) : this.request(command, arg);
  }

  private async explain(): Promise<void> {
    const target = this.target();
    if (target) await this.run('glm.explain', target);
  }

  private async refactor(): Promise<void> {
    const target = this.target();
    if (!target) return;
    const instruction = await askInstruction();
    if (instruction) await this.run('glm.refactor', { ...target, instruction });
  }

  private async fix(): Promise<void> {
    const target = this.target(true);
    if (target) await this.run('glm.fix', target);
  }

  private async ask(): Promise<void> {
    const question = await askQuestion();
    if (!question) return;
    const uri = this.target()?.uri;
    await this.run('glm.ask', uri ? { question, uri } : { question });
  }

  private async cancel(): Promise<void> {
    const result = await this.request<{ cancelled?: unknown }>('glm.cancel', {});
    if (result) void vscode.window.showInformationMessage(result.cancelled ? 'GLM: request cancelled.' : 'GLM: nothing to cancel.');
  }

  private async showThinking(): Promise<void> {
    const turns = await this.request<ThinkingTurn[]>('glm.thinking.show', {});
    if (turns === undefined) return;
    await this.docs.open(this.docs.put('thinking.md', thinkingDocument(Array.isArray(turns) ? turns : [])));
  }

  private async showStatus(): Promise<void> {
    const status = await this.status.refresh();
    if (status) void vscode.window.showInformationMessage(statusMessage(status));
  }

  private async undo(): Promise<void> {
    const result = await this.request('glm.undo', {});
    if (result === undefined) return;
    const msg = undoMessage(result);
    this.out.write(msg.text);
    void (msg.ok ? vscode.window.showInformationMessage(msg.text) : vscode.window.showWarningMessage(msg.text));
  }

  private async resetThinking(): Promise<void> {
    const ok = await vscode.window.showWarningMessage(
      'Archive the preserved-thinking log? The next request starts without earlier reasoning.',
      { modal: true },
      'Archive',
    );
    if (ok !== 'Archive') return;
    const result = await this.request<{ archived?: unknown }>('glm.thinking.reset', {});
    if (result === undefined) return;
    const where = typeof result.archived === 'string' ? ` to ${result.archived}` : '';
    void vscode.window.showInformationMessage(`GLM: thinking log archived${where}.`);
  }

  /** The statusQuery for the status bar: quiet, since a failed poll is not worth a popup. */
  fetchStatus(): Promise<StatusResult | undefined> {
    return this.request<StatusResult>('glm.status', {}, true);
  }

  /** An agent request: busy while it runs, its result shown when it ends. */
  private async run(command: string, arg: Arg): Promise<unknown> {
    this.out.show();
    this.status.busy.requestStarted();
    try {
      const result = await this.request(command, arg);
      if (result !== undefined) this.present(command, result);
      return result;
    } finally {
      this.status.busy.requestEnded();
    }
  }

  private async request<T = unknown>(command: string, arg: Arg, quiet = false): Promise<T | undefined> {
    const client = this.client();
    if (!client?.isRunning()) {
      if (!quiet) void vscode.window.showErrorMessage('GLM: the glm-lsp server is not running (see GLM: Restart Server).');
      return undefined;
    }
    try {
      return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] })) as T;
    } catch (error) {
      if (!quiet) this.reportError(command, error);
      return undefined;
    }
  }

  private present(command: string, result: unknown): void {
    if (typeof result !== 'object' || result === null) return;
    if (ANSWER_COMMANDS.has(command) && typeof (result as AnswerResult).text === 'string') {
      this.presentAnswer(command, result as AnswerResult);
    } else if (EDIT_COMMANDS.has(command) && typeof (result as EditResult).applied === 'boolean') {
      this.presentEdit(command, result as EditResult);
    }
  }

  private presentAnswer(command: string, result: AnswerResult): void {
    this.status.recordStats(result.stats);
    // The answer usually streamed already as `content`; repeat it only when it did not.
    if (!this.out.streamedContent(result.turn)) this.out.write(result.text);
    const stats = formatStats(result.stats);
    this.out.write(`✔ turn ${result.turn} ${command}${stats ? ` · ${stats}` : ''}`);
    const doc = this.docs.put(`turn-${result.turn}.md`, answerDocument(command, result));
    void vscode.window.showInformationMessage(`GLM: ${firstLine(result.text) || 'empty answer'}`, 'Open').then((pick) => {
      if (pick === 'Open') void this.docs.open(doc);
    });
  }

  private presentEdit(command: string, result: EditResult): void {
    this.status.recordStats(result.stats);
    this.out.write(editReport(command, result));
    const msg = editMessage(result);
    // A declined or stale edit is kept by the server: offer to send it again (merged onto the files now).
    const actions = result.applied ? (result.changes?.length ? ['Undo', 'Show Output'] : ['Show Output']) : result.changes?.length ? ['Retry', 'Show Output'] : ['Show Output'];
    const shown = msg.ok ? vscode.window.showInformationMessage(msg.text, ...actions) : vscode.window.showWarningMessage(msg.text, ...actions);
    void shown.then((pick) => {
      if (pick === 'Undo') void this.undo();
      if (pick === 'Retry') void this.run('glm.retry', {});
      if (pick === 'Show Output') this.out.show(false);
    });
  }

  private reportError(command: string, error: unknown): void {
    if (error instanceof ResponseError && error.code === LSPErrorCodes.RequestCancelled) {
      this.out.write(`✖ ${command} cancelled`);
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    this.out.write(`✖ ${command} failed: ${message}`);
    void vscode.window.showErrorMessage(`GLM: ${message}`, 'Show Output').then((pick) => {
      if (pick) this.out.show(false);
    });
  }

  /**
   * uri and range of the active editor. The range is the selection, or none for a bare cursor
   * (the whole file); Fix needs a range, so it falls back to diagnostics under the cursor.
   */
  private target(needRange = false): { uri: string; range?: Range } | undefined {
    const editor = vscode.window.activeTextEditor;
    const client = this.client();
    if (!editor || !client) {
      void vscode.window.showWarningMessage('GLM: open a file first.');
      return undefined;
    }
    const uri = client.code2ProtocolConverter.asUri(editor.document.uri);
    let range: vscode.Range | undefined = editor.selection.isEmpty ? undefined : editor.selection;
    if (!range && needRange) range = diagnosticRange(editor) ?? editor.document.lineAt(editor.selection.active.line).range;
    return range ? { uri, range: client.code2ProtocolConverter.asRange(range) } : { uri };
  }
}

function diagnosticRange(editor: vscode.TextEditor): vscode.Range | undefined {
  const cursor = editor.selection.active;
  return vscode.languages
    .getDiagnostics(editor.document.uri)
    .map((d) => d.range)
    .filter((r) => r.contains(cursor))
    .reduce<vscode.Range | undefined>((acc, r) => (acc ? acc.union(r) : r), undefined);
}

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value.trim() !== '';
}

async function askInstruction(): Promise<string | undefined> {
  const text = await vscode.window.showInputBox({
    title: 'GLM: Refactor…',
    prompt: 'What should GLM change?',
    placeHolder: 'e.g. extract the parsing into its own module and update the callers',
    ignoreFocusOut: true,
  });
  return text?.trim() || undefined;
}

async function askQuestion(): Promise<string | undefined> {
  const text = await vscode.window.showInputBox({
    title: 'GLM: Ask',
    prompt: 'Ask about this workspace',
    placeHolder: 'e.g. where is the config validated?',
    ignoreFocusOut: true,
  });
  return text?.trim() || undefined;
}
