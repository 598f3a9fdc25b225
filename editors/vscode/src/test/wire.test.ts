// The extension against the server's JSON schema (glm_lsp/schema/wire.schema.json, generated from
// the Python wire models): the settings it validates and sends are the server's, of the same kinds.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { accepts, SETTING_KEYS, USER_ONLY_KEYS, type SettingKey } from '../settings';

interface Prop {
  type?: string;
  enum?: unknown[];
  anyOf?: Prop[];
  default?: unknown;
  'x-userOnly'?: boolean;
}

const SCHEMA = JSON.parse(
  readFileSync(join(__dirname, '..', '..', '..', '..', 'glm_lsp', 'schema', 'wire.schema.json'), 'utf8'),
);
const SETTINGS: Record<string, Prop> = SCHEMA.$defs.Settings.properties;

/** The JSON kinds a schema property allows. */
function kinds(prop: Prop): Set<string> {
  if (prop.enum) return new Set(prop.enum.map((v) => (v === null ? 'null' : typeof v === 'number' ? 'integer' : typeof v)));
  if (prop.anyOf) return new Set(prop.anyOf.flatMap((p) => [...kinds(p)]));
  return new Set([prop.type ?? 'unknown']);
}

/** A value of each JSON kind. */
const SAMPLES: Record<string, unknown> = {
  string: 'x',
  integer: 3,
  number: 0.5,
  boolean: true,
  array: ['x'],
  object: { x: 1 },
};

describe('settings against the schema', () => {
  it('has exactly the schema\'s settings, in its order', () => {
    assert.deepEqual(SETTING_KEYS, Object.keys(SETTINGS));
  });

  it('keeps to user settings exactly the settings the server takes only from the user', () => {
    const userOnly = Object.keys(SETTINGS).filter((k) => SETTINGS[k]['x-userOnly']);
    assert.deepEqual([...USER_ONLY_KEYS].sort(), userOnly.sort());
  });

  it('accepts each default and rejects every kind the schema does not allow', () => {
    for (const key of SETTING_KEYS as SettingKey[]) {
      const prop = SETTINGS[key];
      const allowed = kinds(prop);
      // stateDir's null default is "unset" in the settings UI: the extension leaves it out.
      if (!(prop.default === null && key === 'stateDir')) {
        assert.ok(accepts(key, prop.default), `${key}: default ${JSON.stringify(prop.default)}`);
      }
      for (const [kind, sample] of Object.entries(SAMPLES)) {
        const fits = allowed.has(kind) || (kind === 'integer' && allowed.has('number'));
        if (!fits) assert.equal(accepts(key, sample), false, `${key} accepted ${kind} ${JSON.stringify(sample)}`);
      }
    }
  });
});

describe('result types against the schema', () => {
  it('has every command the server defines', () => {
    assert.deepEqual(Object.keys(SCHEMA['x-commands']).sort(), [
      'glm.ask', 'glm.cancel', 'glm.explain', 'glm.fix', 'glm.refactor', 'glm.retry', 'glm.status',
      'glm.thinking.reset', 'glm.thinking.show', 'glm.undo',
    ]);
  });
});
