// Reads the `glm` configuration from VS Code and hands it to the pure mapping in settings.ts.

import * as os from 'node:os';
import * as vscode from 'vscode';
import {
  parseServerCommand,
  toInitializationOptions,
  unknownKeyErrors,
  type InitializationOptions,
  type PathContext,
  type ServerCommand,
  type SettingKey,
} from './settings';

export interface GlmConfig {
  options: InitializationOptions;
  rejected: SettingKey[];
  server: ServerCommand | undefined;
  errors: string[];
}

export function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

export function readConfig(): GlmConfig {
  const cfg = vscode.workspace.getConfiguration('glm');
  const ctx: PathContext = { workspaceFolder: workspaceFolder(), home: os.homedir() };
  const mapped = toInitializationOptions((key) => cfg.inspect(key), ctx);
  // The configuration object carries the section's values as plain properties next to methods.
  const keys = Object.keys(cfg).filter((k) => typeof (cfg as unknown as Record<string, unknown>)[k] !== 'function');
  const server = parseServerCommand(cfg.get('serverCommand'), ctx);
  const errors = [...mapped.errors, ...unknownKeyErrors(keys)];
  if (typeof server === 'string') errors.push(server);
  return { options: mapped.options, rejected: mapped.rejected, server: typeof server === 'string' ? undefined : server, errors };
}

/** The default contributed in package.json, which mirrors the README's Settings. */
export function settingDefault(key: SettingKey): unknown {
  return vscode.workspace.getConfiguration('glm').inspect(key)?.defaultValue;
}

let lastShown = '';

/** Shows configuration errors once per distinct set, not on every unrelated change. */
export function reportConfigErrors(errors: string[]): void {
  const key = errors.join('\n');
  if (key === lastShown) return;
  lastShown = key;
  if (errors.length === 0) return;
  const text = errors.length === 1 ? errors[0] : `${errors[0]} (and ${errors.length - 1} more)`;
  void vscode.window.showErrorMessage(`GLM settings: ${text}`, 'Open Settings').then((pick) => {
    if (pick) void vscode.commands.executeCommand('workbench.action.openSettings', 'glm.');
  });
}
