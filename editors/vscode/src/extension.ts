// Entry point: owns the output channel, status bar, commands and the language client's lifecycle
// (start, restart when serverCommand or a user-only setting changes, other settings pushed).

import * as vscode from 'vscode';
import { DidChangeConfigurationNotification, State, type LanguageClient } from 'vscode-languageclient/node';
import { createClient } from './client';
import { GlmCommands } from './commands';
import { readConfig, reportConfigErrors, settingDefault, workspaceFolder } from './config';
import { ReadOnlyDocs } from './docs';
import { GlmOutput } from './output';
import { STREAM_METHOD } from './protocol';
import { needsRestart, nextSettings } from './settings';
import { StatusBar } from './status';

let client: LanguageClient | undefined;
let out: GlmOutput;
let status: StatusBar;
let commands: GlmCommands;
let sentKeys: string[] = []; // settings the running server last received, to reset removed ones

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  out = new GlmOutput();
  const docs = new ReadOnlyDocs();
  status = new StatusBar(() => commands.fetchStatus());
  commands = new GlmCommands(() => client, out, status, docs);
  context.subscriptions.push(
    out,
    docs,
    status,
    ...commands.register(),
    vscode.commands.registerCommand('glm-lsp.restart', () => restart()),
    vscode.workspace.onDidChangeConfiguration((e) => onConfigChange(e)),
    { dispose: () => void stop() },
  );
  await start();
}

export function deactivate(): Thenable<void> | undefined {
  return stop();
}

async function start(): Promise<void> {
  const config = readConfig();
  reportConfigErrors(config.errors);
  if (!config.server) {
    status.setError('glm.serverCommand is invalid');
    return;
  }
  const server = config.server;
  sentKeys = Object.keys(config.options);
  const c = createClient(server, workspaceFolder(), config.options, {
    executeCommand: (command, args) => commands.intercept(command, args),
    progress: (token, params) => {
      if (params.kind === 'begin') status.busy.progressBegin(token);
      else if (params.kind === 'end') status.busy.progressEnd(token);
    },
    options: () => readConfig().options,
  });
  c.onNotification(STREAM_METHOD, (params: unknown) => {
    if (out.stream(params)) status.busy.streamActivity();
  });
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped) status.busy.reset();
  });
  client = c;
  try {
    await c.start();
    status.setError(undefined);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const cmd = [server.command, ...server.args].join(' ');
    status.setError(`could not start "${cmd}"`);
    out.write(`✖ could not start "${cmd}": ${message}`);
    // Not awaited: activation must not wait for the user to dismiss the message.
    void vscode.window
      .showErrorMessage(
        `GLM: could not start "${cmd}" (${message}). Install glm-lsp or point glm.serverCommand at it.`,
        'Open Settings',
        'Retry',
      )
      .then((pick) => {
        if (pick === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'glm.serverCommand');
        if (pick === 'Retry') void restart();
      });
  }
}

async function stop(): Promise<void> {
  const c = client;
  client = undefined;
  // dispose() stops a running server and is a no-op for one that never started.
  await c?.dispose().catch(() => undefined);
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

function onConfigChange(e: vscode.ConfigurationChangeEvent): void {
  if (!e.affectsConfiguration('glm')) return;
  if (needsRestart((section) => e.affectsConfiguration(section))) {
    void restart();
  } else if (!e.affectsConfiguration('glm.trace')) {
    pushSettings();
  }
}

/** workspace/didChangeConfiguration with section `glm`: the keys the user set (and resets). */
function pushSettings(): void {
  const config = readConfig();
  reportConfigErrors(config.errors);
  if (!client?.isRunning()) return;
  const next = nextSettings(config, sentKeys, settingDefault);
  sentKeys = next.sentKeys;
  void client.sendNotification(DidChangeConfigurationNotification.type, { settings: { glm: next.settings } });
}
