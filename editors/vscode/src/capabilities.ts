// The client capability that tells glm-lsp this is our extension (the README's Plain LSP
// clients): it takes `glm/stream` and waits for an agent command's result. Without it the server
// answers glm.explain/ask/refactor/fix at once and shows the outcome the standard way.
import type { ClientCapabilities, FeatureState, StaticFeature } from 'vscode-languageclient';

export const GLM_EXPERIMENTAL = { stream: true } as const;

/** capabilities.experimental.glm = {stream: true}, keeping any other experimental keys. */
export function declareGlm(capabilities: ClientCapabilities): void {
  const experimental = (capabilities.experimental ?? {}) as Record<string, unknown>;
  capabilities.experimental = { ...experimental, glm: { ...GLM_EXPERIMENTAL } };
}

/** A static feature: vscode-languageclient asks every feature to fill the capabilities. */
export const glmFeature: StaticFeature = {
  fillClientCapabilities: declareGlm,
  initialize: () => undefined,
  getState: (): FeatureState => ({ kind: 'static' }),
  clear: () => undefined,
};
