// Builds the LanguageClient: server process, document selector and the middleware hooks that
// route code-action commands, progress and configuration requests through the extension.

import type { ProgressToken, WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport } from 'vscode-languageclient/node';
import { LanguageClient, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';
import { glmFeature } from './capabilities';
import type { InitializationOptions, ServerCommand } from './settings';

export interface ClientHooks {
  /** A glm.* command invoked through the client (a code action): may prompt, then runs it. */
  executeCommand(command: string, args: unknown[]): Promise<unknown>;
  progress(token: ProgressToken, params: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void;
  /** Current user-set settings, for the server's workspace/configuration requests. */
  options(): InitializationOptions;
}

export function createClient(
  server: ServerCommand,
  cwd: string | undefined,
  initializationOptions: InitializationOptions,
  hooks: ClientHooks,
): LanguageClient {
  // No `transport`: TransportKind.stdio would append `--stdio` to the user's command, which
  // `glm-lsp serve` rejects (usage error, exit 2); without it the client still talks over stdio.
  const serverOptions: ServerOptions = {
    command: server.command,
    args: server.args,
    options: cwd ? { cwd } : {},
  };
  const clientOptions: LanguageClientOptions = {
    // Code actions for any range of any file (the README's LSP commands).
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions,
    outputChannelName: 'GLM Server',
    middleware: {
      executeCommand: (command, args, next) =>
        command.startsWith('glm.') ? hooks.executeCommand(command, args) : next(command, args),
      handleWorkDoneProgress: (token, params, next) => {
        hooks.progress(token, params);
        next(token, params);
      },
      workspace: {
        // Answer for section `glm` with the same user-set keys as initializationOptions,
        // not VS Code's defaults (which would override the server's command-line flags).
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) return result;
          return params.items.map((item, i) => (item.section === 'glm' ? hooks.options() : result[i]));
        },
      },
    },
  };
  // Client id `glm` makes the client read `glm.trace.server`.
  const client = new LanguageClient('glm', 'GLM', serverOptions, clientOptions);
  client.registerFeature(glmFeature); // capabilities.experimental.glm: stream, results awaited
  return client;
}
