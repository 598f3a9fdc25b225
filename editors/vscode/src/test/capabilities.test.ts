// The extension declares capabilities.experimental.glm.stream, so the server keeps streaming to it
// and answering its commands with their results (a plain client gets them answered at once).
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { ClientCapabilities } from 'vscode-languageclient';
import { glmFeature } from '../capabilities';

describe('client capabilities', () => {
  it('declare experimental.glm.stream and keep other experimental keys', () => {
    const caps: ClientCapabilities = { experimental: { other: 1 } };
    glmFeature.fillClientCapabilities(caps);
    assert.deepEqual(caps.experimental, { other: 1, glm: { stream: true } });
    const bare: ClientCapabilities = {};
    glmFeature.fillClientCapabilities(bare);
    assert.deepEqual(bare.experimental, { glm: { stream: true } });
    assert.equal(glmFeature.getState().kind, 'static');
  });
});
