// Loads the compiled extension against a stand-in `vscode` module (VS Code itself cannot run
// here): proves the module graph resolves and that activation registers every contributed command.

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import Module = require('node:module');
import { join } from 'node:path';
import { describe, it } from 'node:test';

type Stub = ((...args: unknown[]) => unknown) & Record<string | symbol, unknown>;

/** Any property, call or `new` yields another stub; `then` stays undefined so it is no thenable. */
function stub(overrides: Record<string, unknown> = {}): Stub {
  const target = function () {} as unknown as Stub;
  return new Proxy(target, {
    get: (_t, prop) => {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      if (prop === 'then') return undefined;
      if (prop === Symbol.toPrimitive) return () => '';
      if (prop === Symbol.iterator) return function* () {};
      return stub();
    },
    set: () => true,
    apply: () => stub(),
    construct: () => stub(),
  });
}

describe('extension: activation against a stub vscode', () => {
  it('registers every command contributed in package.json', async () => {
    const registered: string[] = [];
    const messages: string[] = [];
    const show = (text: string) => {
      messages.push(text);
      return Promise.resolve(undefined);
    };
    const vscode = stub({
      window: stub({ showErrorMessage: show, showWarningMessage: show, showInformationMessage: show }),
      commands: stub({
        registerCommand: (id: string) => {
          registered.push(id);
          return stub();
        },
      }),
      workspace: stub({
        workspaceFolders: undefined,
        isTrusted: true,
        // An invalid serverCommand makes activation stop before spawning a server.
        getConfiguration: () => stub({ get: () => undefined, inspect: () => undefined }),
      }),
    });
    const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
    const original = loader._load;
    loader._load = (request, ...rest) => (request === 'vscode' ? vscode : original(request, ...rest));
    try {
      const ext = require('../extension') as { activate: (ctx: unknown) => Promise<void>; deactivate: () => unknown };
      await ext.activate({ subscriptions: [] });
      await ext.deactivate();
    } finally {
      loader._load = original;
    }
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const contributed = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual([...registered].sort(), contributed);
    assert.equal(pkg.main, './out/extension.js');
    assert.deepEqual(messages, ['GLM settings: glm.serverCommand: undefined is not accepted; use a list such as ["glm-lsp", "serve"].']);
  });
});
