// Read-only documents (answers, thinking log) served from memory: a content provider's documents
// cannot be edited and never ask to be saved, unlike untitled ones.

import * as vscode from 'vscode';

const KEEP = 20; // documents remembered, so "Open" on an older message still works

export class ReadOnlyDocs implements vscode.TextDocumentContentProvider, vscode.Disposable {
  static readonly scheme = 'glm-lsp';
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(ReadOnlyDocs.scheme, this);

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.path) ?? 'This GLM document is no longer available.';
  }

  /** Stores `content` under `name` (its extension picks the language) without opening it. */
  put(name: string, content: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: ReadOnlyDocs.scheme, path: `/${name}` });
    this.contents.delete(uri.path);
    this.contents.set(uri.path, content);
    while (this.contents.size > KEEP) this.contents.delete(this.contents.keys().next().value as string);
    this.changed.fire(uri);
    return uri;
  }

  async open(uri: vscode.Uri): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
  }

  dispose(): void {
    this.registration.dispose();
    this.changed.dispose();
  }
}
