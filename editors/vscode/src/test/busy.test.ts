import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { BusyTracker } from '../busy';

function tracker() {
  const changes: boolean[] = [];
  return { t: new BusyTracker((b) => changes.push(b)), changes };
}

describe('busy: BusyTracker', () => {
  it('is busy while any request runs and reports each flip once', () => {
    const { t, changes } = tracker();
    t.requestStarted();
    t.requestStarted();
    t.requestEnded();
    assert.equal(t.busy, true);
    t.requestEnded();
    t.requestEnded(); // an extra end never goes negative
    assert.equal(t.busy, false);
    t.requestStarted();
    assert.deepEqual(changes, [true, false, true]);
  });

  it('follows work-done progress by token', () => {
    const { t, changes } = tracker();
    t.progressBegin('a');
    t.progressBegin(7);
    t.progressEnd('a');
    assert.equal(t.busy, true);
    t.progressEnd(7);
    assert.deepEqual(changes, [true, false]);
  });

  it('counts stream activity until the request or progress ends', () => {
    const { t } = tracker();
    t.streamActivity();
    assert.equal(t.busy, true);
    t.progressBegin('p');
    t.progressEnd('p');
    assert.equal(t.busy, false);
    t.requestStarted();
    t.streamActivity();
    t.requestEnded();
    assert.equal(t.busy, false);
  });

  it('serverIdle clears lost signals but keeps our pending requests', () => {
    const { t } = tracker();
    t.streamActivity();
    t.progressBegin('lost');
    t.serverIdle();
    assert.equal(t.busy, false);
    t.requestStarted();
    t.serverIdle();
    assert.equal(t.busy, true);
  });

  it('reset clears everything', () => {
    const { t, changes } = tracker();
    t.requestStarted();
    t.progressBegin(1);
    t.streamActivity();
    t.reset();
    assert.equal(t.busy, false);
    assert.deepEqual(changes, [true, false]);
  });
});
