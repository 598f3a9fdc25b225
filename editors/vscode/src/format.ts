// Text the user sees: status bar, messages, result documents. Pure, so wording and edge cases
// (missing stats, empty reasoning, backticks in model output) are unit-tested.

import type { AnswerResult, EditChange, EditResult, Stats, ThinkingTurn } from './protocol';

export function formatTps(tps: number | undefined): string | undefined {
  return typeof tps === 'number' && Number.isFinite(tps) && tps > 0 ? `${tps.toFixed(1)} tok/s` : undefined;
}

/** One line of figures for a request; parts the server did not send are left out. */
export function formatStats(stats: Stats | null | undefined): string {
  if (!stats) return '';
  const parts: string[] = [];
  if (typeof stats.promptTokens === 'number') {
    const reused = typeof stats.reusedTokens === 'number' ? ` (${stats.reusedTokens} reused)` : '';
    parts.push(`${stats.promptTokens} prompt tokens${reused}`);
  }
  if (typeof stats.generatedTokens === 'number') parts.push(`${stats.generatedTokens} generated`);
  if (typeof stats.ttftMs === 'number') parts.push(`first token ${Math.round(stats.ttftMs)} ms`);
  const tps = formatTps(stats.decodeTps);
  if (tps) parts.push(tps);
  const drafted = stats.draftTokens;
  if (typeof drafted === 'number' && drafted > 0 && typeof stats.draftAcceptedTokens === 'number') {
    // speculative decoding: how many drafted tokens the model agreed with
    const pct = Math.round((100 * stats.draftAcceptedTokens) / drafted);
    parts.push(`drafts ${stats.draftAcceptedTokens}/${drafted} accepted (${pct}%)`);
  }
  return parts.join(' · ');
}

export interface StatusView {
  busy: boolean;
  queued?: number;
  tps?: number;
  error?: string;
}

/** Status bar label using VS Code's $(icon) syntax; busy shows a spinner. */
export function statusBarText(view: StatusView): string {
  if (view.error) return '$(error) GLM';
  if (view.busy) return `$(sync~spin) GLM${view.queued ? ` +${view.queued}` : ''}`;
  const tps = formatTps(view.tps);
  return `$(sparkle) GLM${tps ? ` ${tps}` : ''}`;
}

export function firstLine(text: string, max = 120): string {
  const line = text.trim().split('\n', 1)[0]?.trim() ?? '';
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

/** A code fence longer than any backtick run inside, so model output cannot close it early. */
export function fenced(text: string, info = 'text'): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(Math.max(3, longest + 1));
  return `${fence}${info}\n${text.replace(/\n$/, '')}\n${fence}`;
}

function reasoningSection(heading: string, reasoning: readonly string[]): string {
  const parts = reasoning.filter((r) => r.trim() !== '');
  if (parts.length === 0) return `${heading}\n\n_No reasoning recorded._`;
  return parts
    .map((r, i) => `${heading}${parts.length > 1 ? ` ${i + 1} of ${parts.length}` : ''}\n\n${fenced(r)}`)
    .join('\n\n');
}

/** glm.thinking.show result as a Markdown document. */
export function thinkingDocument(turns: readonly ThinkingTurn[]): string {
  if (turns.length === 0) return '# GLM preserved thinking\n\nThe log is empty: no request has completed yet.\n';
  const body = turns.map((t) => {
    const summary = t.summary?.trim() ? `**Summary:** ${t.summary.trim()}\n\n` : '';
    const reasoning = Array.isArray(t.reasoning) ? t.reasoning : [];
    return `## Turn ${t.turn} · ${t.command} · thinking ${t.thinking}\n\n${summary}${reasoningSection('### Reasoning', reasoning)}`;
  });
  return `# GLM preserved thinking\n\n${body.join('\n\n')}\n`;
}

/** glm.explain / glm.ask result as a Markdown document: the answer, then reasoning and figures. */
export function answerDocument(command: string, result: AnswerResult): string {
  const stats = formatStats(result.stats);
  const parts = Array.isArray(result.reasoning) ? result.reasoning.filter((r) => r.trim() !== '') : [];
  const reasoning = parts.length ? `\n\n${reasoningSection('## Reasoning', parts)}` : '';
  return (
    `# GLM turn ${result.turn} · ${command}\n\n${result.text.trim() || '_Empty answer._'}` +
    `${reasoning}${stats ? `\n\n---\n${stats}` : ''}\n`
  );
}

/** Message for a glm.refactor / glm.fix result; `ok` picks information vs warning. */
/** verifyCommand's outcome in a few words: "`pytest -q` passed (1 passed in 0.01s)". */
export function verificationText(v: EditResult['verification']): string {
  if (!v || typeof v.command !== 'string') return '';
  const verdict = v.exitCode === 0 ? 'passed' : v.exitCode === null ? 'did not run' : `failed (exit code ${v.exitCode})`;
  return `\`${v.command}\` ${verdict}${v.summary ? `: ${firstLine(v.summary)}` : ''}`;
}

export function editMessage(result: EditResult): { ok: boolean; text: string } {
  const changes = Array.isArray(result.changes) ? result.changes : [];
  const summary = result.summary?.trim() ? `: ${firstLine(result.summary)}` : '';
  const verified = verificationText(result.verification);
  const suffix = verified ? ` [verified: ${verified}]` : '';
  if (result.applied) {
    const n = changes.length;
    const taken = changes.filter((c) => c.applied !== false).length;
    const partial = changes.some((c) => c.applied === false || partlyTaken(c));
    if (!partial) return { ok: true, text: `GLM applied ${n} change${n === 1 ? '' : 's'}${summary}${suffix}` };
    // Partly accepted in the Refactor Preview: say what landed, so glm.retry's remainder is no surprise.
    const parts = changes.filter(partlyTaken).map((c) => `${c.hunks!.applied} of ${c.hunks!.total} hunks of ${baseName(c.uri)}`);
    const left = changes.filter((c) => c.applied === false).map((c) => baseName(c.uri));
    const notes = [...parts.map((p) => `took ${p}`), ...(left.length ? [`left ${left.join(', ')}`] : [])];
    return { ok: true, text: `GLM applied ${taken} of ${n} change${n === 1 ? '' : 's'} (${notes.join('; ')})${summary}${suffix}` };
  }
  if (changes.length === 0 && !result.failureReason) return { ok: true, text: `GLM proposed no changes${summary}` };
  return { ok: false, text: `GLM edit not applied: ${result.failureReason ?? 'the editor declined it'}${suffix}` };
}

function partlyTaken(c: EditChange): boolean {
  return c.hunks !== undefined && c.hunks.applied < c.hunks.total;
}

function baseName(uri: string): string {
  const path = uri.replace(/\/+$/, '');
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

/** Lines for the output channel after an edit request: summary, changed files, figures. */
export function editReport(command: string, result: EditResult): string {
  const lines = [`✔ turn ${result.turn} ${command}: ${editMessage(result).text}`];
  if (result.summary?.trim()) lines.push(result.summary.trim());
  for (const change of Array.isArray(result.changes) ? result.changes : []) {
    const state = partlyTaken(change) ? ` (${change.hunks!.applied} of ${change.hunks!.total} hunks)` : change.applied === false ? ' (left)' : '';
    lines.push(`  ${change.kind} ${change.uri}${state}`);
  }
  const verified = verificationText(result.verification);
  if (verified) lines.push(`  verification: ${verified}`);
  const stats = formatStats(result.stats);
  if (stats) lines.push(`  ${stats}`);
  return lines.join('\n') + '\n';
}

/**
 * glm.undo's result shape is not fixed by the contract: read the usual success flags and reason
 * fields, and fall back to a neutral message.
 */
export function undoMessage(result: unknown): { ok: boolean; text: string } {
  const r = typeof result === 'object' && result !== null ? (result as Record<string, unknown>) : {};
  const flag = [r.reverted, r.undone, r.applied, r.ok].find((v) => typeof v === 'boolean');
  const reason = [r.failureReason, r.reason, r.message].find((v) => typeof v === 'string' && v.trim() !== '');
  if (flag === false) return { ok: false, text: `GLM could not undo${reason ? `: ${reason}` : '.'}` };
  return { ok: true, text: `GLM undid the last edit${reason ? `: ${reason}` : '.'}` };
}

export function statusMessage(s: { backend?: string; model?: string; busy?: boolean; queued?: number; turns?: number; stats?: Stats | null }): string {
  const parts = [
    `${s.backend ?? '?'} · ${s.model ?? '?'}`,
    s.busy ? `busy${s.queued ? `, ${s.queued} queued` : ''}` : 'idle',
    `${s.turns ?? 0} turn${s.turns === 1 ? '' : 's'} in the log`,
  ];
  const stats = formatStats(s.stats);
  if (stats) parts.push(`last request: ${stats}`);
  return `GLM: ${parts.join(' · ')}`;
}
