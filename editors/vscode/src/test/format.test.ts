import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  answerDocument,
  editMessage,
  editReport,
  fenced,
  firstLine,
  formatStats,
  formatTps,
  statusBarText,
  statusMessage,
  thinkingDocument,
  undoMessage,
} from '../format';

const stats = { promptTokens: 1200, reusedTokens: 1000, prefilledTokens: 200, generatedTokens: 64, ttftMs: 312.4, decodeTps: 23.456 };

describe('format: figures', () => {
  it('formats stats, leaving out what is missing', () => {
    assert.equal(formatStats(stats), '1200 prompt tokens (1000 reused) · 64 generated · first token 312 ms · 23.5 tok/s');
    assert.equal(formatStats({ generatedTokens: 5 }), '5 generated');
    assert.equal(
      formatStats({ generatedTokens: 40, draftTokens: 30, draftAcceptedTokens: 24 }),
      '40 generated · drafts 24/30 accepted (80%)',
    );
    assert.equal(formatStats({ generatedTokens: 5, draftTokens: 0, draftAcceptedTokens: 0 }), '5 generated');
    assert.equal(formatStats(undefined), '');
    assert.equal(formatTps(0), undefined);
    assert.equal(formatTps(Number.NaN), undefined);
  });

  it('status bar: spinner when busy, tokens/s when idle', () => {
    assert.equal(statusBarText({ busy: true }), '$(sync~spin) GLM');
    assert.equal(statusBarText({ busy: true, queued: 2, tps: 9 }), '$(sync~spin) GLM +2');
    assert.equal(statusBarText({ busy: false, tps: 31.04 }), '$(sparkle) GLM 31.0 tok/s');
    assert.equal(statusBarText({ busy: false }), '$(sparkle) GLM');
    assert.equal(statusBarText({ busy: true, error: 'x' }), '$(error) GLM');
  });

  it('status message', () => {
    assert.equal(
      statusMessage({ backend: 'mlx', model: 'm', busy: true, queued: 1, turns: 1, stats: { decodeTps: 10 } }),
      'GLM: mlx · m · busy, 1 queued · 1 turn in the log · last request: 10.0 tok/s',
    );
    assert.equal(statusMessage({ backend: 'openai', model: 'glm', busy: false, turns: 0 }), 'GLM: openai · glm · idle · 0 turns in the log');
  });
});

describe('format: documents', () => {
  it('fences text so backticks inside cannot close the block', () => {
    assert.equal(fenced('a'), '```text\na\n```');
    assert.equal(fenced('x ```` y\n'), '`````text\nx ```` y\n`````');
  });

  it('renders the thinking log with turns, summaries and every reasoning part', () => {
    const doc = thinkingDocument([
      { turn: 1, command: 'glm.explain', thinking: 'disabled', reasoning: [], summary: 'Explained f.' },
      { turn: 2, command: 'glm.refactor', thinking: 'enabled', reasoning: ['first', 'second'], summary: '' },
    ]);
    assert.match(doc, /^# GLM preserved thinking\n/);
    assert.match(doc, /## Turn 1 · glm\.explain · thinking disabled\n\n\*\*Summary:\*\* Explained f\.\n\n### Reasoning\n\n_No reasoning recorded\._/);
    assert.match(doc, /## Turn 2 · glm\.refactor · thinking enabled\n\n### Reasoning 1 of 2\n\n```text\nfirst\n```\n\n### Reasoning 2 of 2\n\n```text\nsecond\n```\n$/);
    assert.match(thinkingDocument([]), /log is empty/);
  });

  it('renders an answer with its reasoning and figures', () => {
    const doc = answerDocument('glm.explain', { text: 'It parses.\n', reasoning: ['hmm'], turn: 3, stats });
    assert.equal(
      doc,
      '# GLM turn 3 · glm.explain\n\nIt parses.\n\n## Reasoning\n\n```text\nhmm\n```\n\n---\n' +
        '1200 prompt tokens (1000 reused) · 64 generated · first token 312 ms · 23.5 tok/s\n',
    );
    assert.equal(answerDocument('glm.ask', { text: '', reasoning: [], turn: 1, stats: {} }), '# GLM turn 1 · glm.ask\n\n_Empty answer._\n');
    assert.equal(answerDocument('glm.ask', { text: 'a', reasoning: ['', ' '], turn: 1, stats: {} }), '# GLM turn 1 · glm.ask\n\na\n');
  });

  it('renders the server\'s own explain result (reasoning is a list on the wire)', () => {
    // Written by tests/test_server.py from a real glm.explain answer, so a drift in the wire
    // shape fails here as well as there.
    const wire = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'test', 'fixtures', 'explain-result.json'), 'utf8'));
    assert.ok(Array.isArray(wire.reasoning) && wire.reasoning.length === 2);
    const doc = answerDocument('glm.explain', wire);
    assert.match(doc, /## Reasoning 1 of 2\n\n```text\n[^`]+\n```\n\n## Reasoning 2 of 2/);
    assert.ok(doc.includes(wire.text.trim()));
  });

  it('firstLine trims and truncates', () => {
    assert.equal(firstLine('\n  Hello world \nmore'), 'Hello world');
    assert.equal(firstLine('abcdef', 4), 'abc…');
    assert.equal(firstLine(''), '');
  });
});

describe('format: edit and undo results', () => {
  const changes = [{ uri: 'file:///w/a.py', kind: 'edit' }, { uri: 'file:///w/b.py', kind: 'create' }];

  it('applied, declined and empty edits', () => {
    assert.deepEqual(editMessage({ applied: true, changes, summary: 'Moved parse.\nDetails', turn: 2, stats: {} }), {
      ok: true,
      text: 'GLM applied 2 changes: Moved parse.',
    });
    assert.deepEqual(editMessage({ applied: false, changes, summary: '', turn: 2, stats: {}, failureReason: 'a.py changed' }), {
      ok: false,
      text: 'GLM edit not applied: a.py changed',
    });
    assert.deepEqual(editMessage({ applied: false, changes: [], summary: 'Nothing to do.', turn: 2, stats: {} }), {
      ok: true,
      text: 'GLM proposed no changes: Nothing to do.',
    });
  });

  it('reports changed files and figures in the output', () => {
    assert.equal(
      editReport('glm.refactor', { applied: true, changes, summary: 'Moved parse.', turn: 2, stats: { decodeTps: 5 } }),
      '✔ turn 2 glm.refactor: GLM applied 2 changes: Moved parse.\nMoved parse.\n  edit file:///w/a.py\n  create file:///w/b.py\n  5.0 tok/s\n',
    );
  });

  it('shows the verification outcome with the edit', () => {
    const verification = { command: 'pytest -q', exitCode: 0, summary: '1 passed in 0.01s' };
    assert.deepEqual(editMessage({ applied: true, changes, summary: 'Fixed add.', turn: 3, stats: {}, verification }), {
      ok: true,
      text: 'GLM applied 2 changes: Fixed add. [verified: `pytest -q` passed: 1 passed in 0.01s]',
    });
    const failed = { command: 'pytest -q', exitCode: 1, summary: '1 failed in 0.02s' };
    assert.equal(
      editReport('glm.fix', { applied: false, changes, summary: '', turn: 3, stats: {}, failureReason: 'declined', verification: failed }),
      '✔ turn 3 glm.fix: GLM edit not applied: declined [verified: `pytest -q` failed (exit code 1): 1 failed in 0.02s]\n'
        + '  edit file:///w/a.py\n  create file:///w/b.py\n  verification: `pytest -q` failed (exit code 1): 1 failed in 0.02s\n',
    );
  });

  it('a partly accepted review says what landed', () => {
    const reviewed = [
      { uri: 'file:///w/a.py', kind: 'modify', applied: true, hunks: { applied: 1, total: 2 } },
      { uri: 'file:///w/b.py', kind: 'modify', applied: false },
    ];
    const result = { applied: true, changes: reviewed, summary: 'Renamed foo.', turn: 3, stats: {} };
    assert.deepEqual(editMessage(result), {
      ok: true,
      text: 'GLM applied 1 of 2 changes (took 1 of 2 hunks of a.py; left b.py): Renamed foo.',
    });
    assert.equal(
      editReport('glm.refactor', result),
      '✔ turn 3 glm.refactor: GLM applied 1 of 2 changes (took 1 of 2 hunks of a.py; left b.py): Renamed foo.\n' +
        'Renamed foo.\n  modify file:///w/a.py (1 of 2 hunks)\n  modify file:///w/b.py (left)\n',
    );
    const whole = reviewed.map((c) => ({ ...c, applied: true, hunks: undefined }));
    assert.equal(editMessage({ ...result, changes: whole }).text, 'GLM applied 2 changes: Renamed foo.');
  });

  it('undo messages from the usual result fields', () => {
    assert.deepEqual(undoMessage({ reverted: true }), { ok: true, text: 'GLM undid the last edit.' });
    assert.deepEqual(undoMessage({ reverted: false, reason: 'a.py changed since' }), { ok: false, text: 'GLM could not undo: a.py changed since' });
    assert.deepEqual(undoMessage(null), { ok: true, text: 'GLM undid the last edit.' });
  });
});
