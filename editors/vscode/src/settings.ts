// VS Code configuration -> glm-lsp initializationOptions (the README's Settings). Pure: the extension
// passes in `inspect` results, so the mapping and its validation are unit-tested without VS Code.

import type { Settings } from './wire';

/** The subset of vscode.WorkspaceConfiguration.inspect() that says where a value was set. */
export interface Inspected {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

export type Inspect = (key: string) => Inspected | undefined;

export interface PathContext {
  workspaceFolder?: string;
  home?: string;
}

type Check = { ok: true; value: unknown } | { ok: false; accepted: string };
type Validator = (value: unknown) => Check;

const ok = (value: unknown): Check => ({ ok: true, value });
const bad = (accepted: string): Check => ({ ok: false, accepted });

function oneOf(...choices: readonly unknown[]): Validator {
  const accepted = choices.map((c) => JSON.stringify(c)).join(', ');
  return (v) => (choices.includes(v) ? ok(v) : bad(`one of ${accepted}`));
}

function nonEmptyString(v: unknown): Check {
  return typeof v === 'string' && v.trim() !== '' ? ok(v.trim()) : bad('a non-empty string');
}

function bool(v: unknown): Check {
  return typeof v === 'boolean' ? ok(v) : bad('true or false');
}

function positiveInt(v: unknown): Check {
  return Number.isInteger(v) && (v as number) >= 1 ? ok(v) : bad('an integer >= 1');
}

function number(min: number, max: number, minExclusive = false): Validator {
  const accepted = `a number ${minExclusive ? '>' : '>='} ${min}${max < Infinity ? ` and <= ${max}` : ''}`;
  return (v) =>
    typeof v === 'number' && Number.isFinite(v) && (minExclusive ? v > min : v >= min) && v <= max
      ? ok(v)
      : bad(accepted);
}

function url(v: unknown): Check {
  return typeof v === 'string' && /^https?:\/\/\S+$/.test(v.trim())
    ? ok(v.trim().replace(/\/+$/, ''))
    : bad('an http:// or https:// URL');
}

function envName(v: unknown): Check {
  return typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(v)
    ? ok(v)
    : bad('an environment variable name such as GLM_LSP_API_KEY');
}

function nonNegativeInt(v: unknown): Check {
  return Number.isInteger(v) && (v as number) >= 0 ? ok(v) : bad('an integer >= 0');
}

/** `{"name": {command, args?, env?} | {url, headers?}}`; the server checks the rest and names it. */
function mcpServers(v: unknown): Check {
  const accepted = 'an object of servers such as {"notes": {"command": "python", "args": ["notes_server.py"]}}';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(accepted);
  const entries = Object.values(v as Record<string, unknown>);
  const valid = entries.every((e) => {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
    const { command, url } = e as { command?: unknown; url?: unknown };
    return (typeof command === 'string') !== (typeof url === 'string');
  });
  return valid ? ok(v) : bad(accepted);
}

function stringList(v: unknown): Check {
  return Array.isArray(v) && v.every((p) => typeof p === 'string' && p.trim() !== '')
    ? ok(v.map((p: string) => p.trim()))
    : bad('a list of glob patterns such as ["pytest *"]');
}

/** `[{label, instruction}]`: refactors the code-action menu runs without a prompt. */
function codeActions(v: unknown): Check {
  const valid =
    Array.isArray(v) &&
    v.every((e) => {
      if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
      const { label, instruction, ...rest } = e as Record<string, unknown>;
      const text = (t: unknown) => typeof t === 'string' && t.trim() !== '';
      return text(label) && text(instruction) && Object.keys(rest).length === 0;
    });
  return valid
    ? ok(v)
    : bad('a list of {"label", "instruction"} objects such as [{"label": "Simplify", "instruction": "Simplify this code."}]');
}

/** null is the documented default of these keys, so an explicit null is passed on. */
function nullable(inner: Validator): Validator {
  return (v) => {
    if (v === null) return ok(null);
    const checked = inner(v);
    return checked.ok ? checked : bad(`null or ${checked.accepted}`);
  };
}

/**
 * The README's Settings table, in its order; the server receives exactly these camelCase keys.
 * `satisfies Record<keyof Settings, ...>` (Settings: generated from the server's model) makes the
 * compiler reject a missing or extra key; test/wire.test.ts checks the kinds against the schema.
 */
const VALIDATORS = {
  backend: oneOf('mlx', 'openai'),
  model: nonEmptyString,
  baseUrl: url,
  apiKeyEnv: envName,
  thinking: oneOf('auto', 'enabled', 'disabled'),
  preserveThinking: bool,
  temperature: number(0, Infinity),
  topP: number(0, 1, true),
  maxTokens: positiveInt,
  contextLength: positiveInt,
  kvBits: oneOf(null, 4, 8),
  maxSteps: positiveInt,
  stateDir: nonEmptyString,
  persistKvCache: bool,
  scriptedReplies: nullable(nonEmptyString),
  host: oneOf('auto', 'off'),
  keepAlive: number(-1, Infinity),
  hostCacheGB: number(0, Infinity),
  allowCommands: stringList,
  verifyCommand: nullable(nonEmptyString),
  verifyRounds: nonNegativeInt,
  commandTimeout: positiveInt,
  sandbox: oneOf('required', 'off'),
  allowNetwork: bool,
  commandEnv: stringList,
  sandboxHide: stringList,
  review: oneOf('preview', 'direct'),
  speculativeDecoding: bool,
  draftTokens: positiveInt,
  mcpServers,
  mcpAllow: stringList,
  mcpAllowReadOnly: bool,
  mcpTimeout: positiveInt,
  codeActions,
} satisfies Record<keyof Settings, Validator>;

/** Whether the extension would send `value` for `key` (its own check, before the server's). */
export function accepts(key: SettingKey, value: unknown): boolean {
  return VALIDATORS[key](value).ok;
}

export type SettingKey = keyof typeof VALIDATORS;
export const SETTING_KEYS = Object.keys(VALIDATORS) as SettingKey[];

/** Keys under `glm.` that only the client reads. */
export const CLIENT_KEYS = ['serverCommand', 'trace'] as const;

/**
 * Settings that decide where data goes or what runs (the server's x-userOnly, issue 25): only the
 * user's own (global) value counts, trusted workspace or not, so a repository's
 * .vscode/settings.json can never choose the endpoint, the key's variable, the state dir, the
 * review, a command, an MCP server or what the model is told under a code action's label.
 * package.json scopes them `machine` and lists them in
 * `restrictedConfigurations`; the server refuses them from didChangeConfiguration, so a change
 * restarts the server (extension.ts).
 */
export const USER_ONLY_KEYS = new Set<SettingKey>([
  'backend', 'model', 'baseUrl', 'apiKeyEnv', 'stateDir', 'scriptedReplies', 'host', 'keepAlive',
  'hostCacheGB',
  'allowCommands', 'verifyCommand', 'verifyRounds', 'commandTimeout', 'sandbox', 'allowNetwork',
  'commandEnv', 'sandboxHide', 'review', 'mcpServers', 'mcpAllow', 'mcpAllowReadOnly', 'mcpTimeout',
  'codeActions',
]);

/**
 * Whether a configuration change needs a new server: the command that starts it, or a user-only
 * setting (the server takes those only at start). `affects`: ConfigurationChangeEvent's check.
 */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return affects('glm.serverCommand') || [...USER_ONLY_KEYS].some((key) => affects(`glm.${key}`));
}

/** Settings whose string value is a path: `~` and `${workspaceFolder}` are expanded. */
const PATH_KEYS = new Set<SettingKey>(['model', 'stateDir', 'scriptedReplies']);

export type InitializationOptions = Partial<Record<SettingKey, unknown>>;

export interface Mapped {
  options: InitializationOptions;
  errors: string[];
  /** Keys the user set to a bad value: left out, and the server keeps its previous value. */
  rejected: SettingKey[];
}

/** The value the user set, most specific scope first; `set: false` when only the default applies. */
export function userValue(inspected: Inspected | undefined): { set: boolean; value?: unknown } {
  if (!inspected) return { set: false };
  for (const value of [inspected.workspaceFolderValue, inspected.workspaceValue, inspected.globalValue]) {
    if (value !== undefined) return { set: true, value };
  }
  return { set: false };
}

export function expandPath(value: string, ctx: PathContext): string {
  let out = value;
  if (ctx.workspaceFolder !== undefined) out = out.split('${workspaceFolder}').join(ctx.workspaceFolder);
  if (ctx.home !== undefined && (out === '~' || out.startsWith('~/'))) out = ctx.home + out.slice(1);
  return out;
}

/**
 * Only keys the user set, validated. A bad value is left out (the server keeps its previous
 * value, as the server does) and reported in `errors` naming the key and what it accepts.
 */
export function toInitializationOptions(inspect: Inspect, ctx: PathContext = {}): Mapped {
  const options: InitializationOptions = {};
  const errors: string[] = [];
  const rejected: SettingKey[] = [];
  for (const key of SETTING_KEYS) {
    let inspected = inspect(key);
    if (inspected && USER_ONLY_KEYS.has(key)) {
      inspected = { globalValue: inspected.globalValue };
    }
    const { set, value } = userValue(inspected);
    // An empty stateDir means "the default" in the settings UI, not an error.
    if (!set || (key === 'stateDir' && (value === null || value === ''))) continue;
    const raw = key === 'scriptedReplies' && value === '' ? null : value;
    const checked = VALIDATORS[key](raw);
    if (!checked.ok) {
      errors.push(`glm.${key}: ${JSON.stringify(value)} is not accepted; use ${checked.accepted}.`);
      rejected.push(key);
      continue;
    }
    options[key] =
      PATH_KEYS.has(key) && typeof checked.value === 'string' ? expandPath(checked.value, ctx) : checked.value;
  }
  return { options, errors, rejected };
}

/** Keys present under `glm.` that neither the server nor the client knows, with a hint. */
export function unknownKeyErrors(keys: readonly string[]): string[] {
  const known = new Set<string>([...SETTING_KEYS, ...CLIENT_KEYS]);
  const byLower = new Map([...known].map((k) => [k.toLowerCase(), k]));
  return keys
    .filter((k) => !known.has(k))
    .map((k) => {
      const hint = byLower.get(k.toLowerCase());
      return `glm.${k} is not a glm-lsp setting${hint ? `; did you mean glm.${hint}?` : '.'}`;
    });
}

export interface ServerCommand {
  command: string;
  args: string[];
}

export function parseServerCommand(value: unknown, ctx: PathContext = {}): ServerCommand | string {
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((part) => typeof part === 'string') ||
    value[0].trim() === ''
  ) {
    return `glm.serverCommand: ${JSON.stringify(value)} is not accepted; use a list such as ["glm-lsp", "serve"].`;
  }
  const [command, ...args] = value as string[];
  return { command: expandPath(command.trim(), ctx), args };
}

/**
 * Settings for workspace/didChangeConfiguration: the user-set keys, plus the default of each key
 * that was sent before and is now unset, so removing a setting takes effect on the running
 * server (command-line flags still win there, the README's Settings). Rejected keys are neither sent
 * nor reset: the server keeps their previous value. A key whose default is null but does not
 * accept null (stateDir) cannot be reset this way and is left out.
 * Returns the settings to send and the keys the server then holds from us.
 */
export function nextSettings(
  mapped: Pick<Mapped, 'options' | 'rejected'>,
  previousKeys: readonly string[],
  defaultOf: (key: SettingKey) => unknown,
): { settings: InitializationOptions; sentKeys: string[] } {
  const settings: InitializationOptions = { ...mapped.options };
  const kept = mapped.rejected.filter((key) => previousKeys.includes(key));
  for (const key of previousKeys) {
    if (!(SETTING_KEYS as string[]).includes(key) || key in settings || kept.includes(key as SettingKey)) continue;
    const value = defaultOf(key as SettingKey);
    if (value !== undefined && VALIDATORS[key as SettingKey](value).ok) settings[key as SettingKey] = value;
  }
  return { settings, sentKeys: [...Object.keys(mapped.options), ...kept] };
}
