import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { StreamNotification } from '../protocol';
import {
  asStreamNotification,
  Coalescer,
  REASONING_PREFIX as R,
  StreamFormatter,
  TOOL_CALL_PREFIX,
  TOOL_RESULT_PREFIX,
  toolCallLine,
  toolResultLine,
  type Timers,
} from '../stream';

const n = (kind: StreamNotification['kind'], text: string, turn = 1): StreamNotification => ({ turn, kind, text });

function render(...notes: StreamNotification[]): string {
  const f = new StreamFormatter();
  return notes.map((x) => f.push(x)).join('') + f.end();
}

describe('stream: notification shape', () => {
  it('accepts the contract shape and rejects anything else', () => {
    assert.deepEqual(asStreamNotification({ turn: 3, kind: 'content', text: 'x' }), n('content', 'x', 3));
    for (const bad of [null, 'x', {}, { turn: '3', kind: 'content', text: 'x' }, { turn: 3, kind: 'thought', text: 'x' }, { turn: 3, kind: 'content' }]) {
      assert.equal(asStreamNotification(bad), undefined);
    }
  });
});

describe('stream: StreamFormatter', () => {
  it('writes a header per turn and content as is, coalescing deltas', () => {
    assert.equal(render(n('content', 'Hel'), n('content', 'lo\nwor'), n('content', 'ld')), '\n── GLM turn 1 ──\nHello\nworld\n');
  });

  it('prefixes every reasoning line once, across deltas that split lines', () => {
    const out = render(n('reasoning', 'I should'), n('reasoning', ' read a.py.\nThen'), n('reasoning', ' edit.'));
    assert.equal(out, `\n── GLM turn 1 ──\n${R}I should read a.py.\n${R}Then edit.\n`);
  });

  it('separates reasoning from the answer and drops the newlines that open a section', () => {
    const out = render(n('reasoning', 'think'), n('content', '\n\n'), n('content', '\nAnswer.'));
    assert.equal(out, `\n── GLM turn 1 ──\n${R}think\n\nAnswer.\n`);
  });

  it('keeps blank lines inside reasoning without a dangling prefix', () => {
    assert.equal(render(n('reasoning', 'a\n\nb')), `\n── GLM turn 1 ──\n${R}a\n\n${R}b\n`);
  });

  it('writes each tool call and result on one line of its own', () => {
    const out = render(
      n('reasoning', 'look'),
      n('tool_call', 'read_file {\n  "path": "a.py"\n}'),
      n('tool_result', 'def f():\n    return 1\n'),
      n('tool_call', 'edit_file {"path": "a.py"}'),
      n('content', 'Done.'),
    );
    assert.equal(
      out,
      `\n── GLM turn 1 ──\n${R}look\n${TOOL_CALL_PREFIX}read_file { "path": "a.py" }\n${TOOL_RESULT_PREFIX}def f(): (+1 lines)\n` +
        `${TOOL_CALL_PREFIX}edit_file {"path": "a.py"}\nDone.\n`,
    );
  });

  it('starts a new header when the turn changes, ending the open line', () => {
    const out = render(n('content', 'one', 1), n('content', 'two', 2));
    assert.equal(out, '\n── GLM turn 1 ──\none\n\n── GLM turn 2 ──\ntwo\n');
  });

  it('remembers which turns streamed their answer', () => {
    const f = new StreamFormatter();
    f.push(n('reasoning', 'x', 4));
    assert.equal(f.streamedContent(4), false);
    f.push(n('content', '\n', 4));
    assert.equal(f.streamedContent(4), false);
    f.push(n('content', 'ok', 4));
    assert.equal(f.streamedContent(4), true);
    assert.equal(f.streamedContent(5), false);
  });

  it('end() only closes an open line', () => {
    const f = new StreamFormatter();
    assert.equal(f.end(), '');
    f.push(n('content', 'line\n'));
    assert.equal(f.end(), '');
  });
});

describe('stream: one-line tool text', () => {
  it('truncates long calls and summarises results', () => {
    assert.equal(toolCallLine('x'.repeat(500)).length, 160);
    assert.ok(toolCallLine('x'.repeat(500)).endsWith('…'));
    assert.equal(toolResultLine(''), '(empty)');
    assert.equal(toolResultLine('\n\nsrc/a.py:3: def f()\nsrc/b.py:9: f()\n'), 'src/a.py:3: def f() (+1 lines)');
    assert.equal(toolResultLine('ok'), 'ok');
  });
});

class FakeTimers implements Timers {
  pending: (() => void) | undefined;
  setTimeout(fn: () => void): unknown {
    this.pending = fn;
    return 1;
  }
  clearTimeout(): void {
    this.pending = undefined;
  }
  fire(): void {
    const fn = this.pending;
    this.pending = undefined;
    fn?.();
  }
}

describe('stream: Coalescer', () => {
  it('batches pushes into one write per tick', () => {
    const writes: string[] = [];
    const timers = new FakeTimers();
    const c = new Coalescer((t) => writes.push(t), 50, 4096, timers);
    c.push('a');
    c.push('b');
    c.push('');
    assert.deepEqual(writes, []);
    timers.fire();
    assert.deepEqual(writes, ['ab']);
    c.push('c');
    timers.fire();
    assert.deepEqual(writes, ['ab', 'c']);
  });

  it('flushes at once past the size limit and on dispose', () => {
    const writes: string[] = [];
    const timers = new FakeTimers();
    const c = new Coalescer((t) => writes.push(t), 50, 4, timers);
    c.push('ab');
    c.push('cde');
    assert.deepEqual(writes, ['abcde']);
    assert.equal(timers.pending, undefined);
    c.push('f');
    c.dispose();
    assert.deepEqual(writes, ['abcde', 'f']);
    c.flush();
    assert.deepEqual(writes, ['abcde', 'f']);
  });
});
