// Drives a real `glm-lsp acp` with the official TypeScript SDK (v1 entry point): a prompt that
// reads a file through fs/read_text_file, edits two files (permission asked per file, each with
// its own diff and path, written through fs/write_text_file) and streams thought chunks; then a
// malformed request answered with an error.
// tests/test_acp_node.py runs it with GLM_ACP_* in the environment.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, methods, ndJsonStream, PROTOCOL_VERSION } from "@agentclientprotocol/sdk";

const python = process.env.GLM_ACP_PYTHON;
const model = process.env.GLM_ACP_MODEL;
const replies = process.env.GLM_ACP_REPLIES;
const workspace = process.env.GLM_ACP_WORKSPACE;

function startAgent() {
  const child = spawn(
    python,
    ["-m", "glm_lsp.cli", "acp", "--model", model, "--scripted-replies", replies],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const stream = ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
  return { child, stream };
}

test("a prompt reads, asks, and writes two files through the client", { timeout: 240_000 }, async () => {
  const updates = [];
  const permissions = [];
  const timeline = []; // updates and permission answers, in the order they came
  const reads = [];
  const writes = [];
  const app = client({ name: "glm-lsp-node-test" })
    .onNotification(methods.client.session.update, ({ params }) => {
      updates.push(params.update);
      timeline.push(["update", params.update]);
    })
    .onRequest(methods.client.session.requestPermission, ({ params }) => {
      permissions.push(params);
      timeline.push(["answer", "allow_once"]);
      return { outcome: { outcome: "selected", optionId: "allow_once" } };
    })
    .onRequest(methods.client.fs.readTextFile, ({ params }) => {
      reads.push(params.path);
      return { content: readFileSync(params.path, "utf8") };
    })
    .onRequest(methods.client.fs.writeTextFile, ({ params }) => {
      writes.push([params.path, params.content]);
      writeFileSync(params.path, params.content);
      return {};
    });
  const { child, stream } = startAgent();
  try {
    await app.connectWith(stream, async (ctx) => {
      const init = await ctx.request(methods.agent.initialize, {
        protocolVersion: PROTOCOL_VERSION,
        clientCapabilities: { fs: { readTextFile: true, writeTextFile: true }, terminal: false },
      });
      assert.equal(init.protocolVersion, 1);
      assert.equal(init.agentCapabilities.loadSession, true);
      const session = await ctx.request(methods.agent.session.new, { cwd: workspace, mcpServers: [] });
      const reply = await ctx.request(methods.agent.session.prompt, {
        sessionId: session.sessionId,
        prompt: [{ type: "text", text: "Set A to 2 and add b.py" }],
      });
      assert.equal(reply.stopReason, "end_turn");
      assert.ok(reply._meta.glm.stats.generatedTokens > 0);

      // Malformed: the agent answers with an error and keeps serving.
      await assert.rejects(
        ctx.request(methods.agent.session.prompt, { sessionId: 42, prompt: "not a list" }),
        (error) => error.code === -32602,
      );
      await assert.rejects(
        ctx.request(methods.agent.session.load, { cwd: workspace, sessionId: "../x", mcpServers: [] }),
        (error) => error.code === -32602 && /is not a glm-lsp session id/.test(error.message),
      );
      const listed = await ctx.request(methods.agent.session.list, { cwd: workspace });
      assert.deepEqual(
        listed.sessions.map((s) => [s.sessionId, s.title]),
        [[session.sessionId, "Set A to 2 and add b.py"]],
      );
    });
  } finally {
    child.stdin.end();
  }
  const thoughts = updates.filter((u) => u.sessionUpdate === "agent_thought_chunk");
  assert.equal(
    thoughts.map((u) => u.content.text).join(""),
    "I should read a.py first.It holds A = 1; change it.Now b.py follows.Both files agree.",
  );
  const tools = updates.filter((u) => u.sessionUpdate === "tool_call").map((u) => [u.kind, u.title]);
  assert.deepEqual(tools, [
    ["read", "Read a.py"],
    ["edit", "Edit a.py"],
    ["edit", "Write b.py"],
  ]);
  const diffs = updates
    .filter((u) => u.sessionUpdate === "tool_call_update")
    .flatMap((u) => u.content ?? [])
    .filter((c) => c.type === "diff");
  assert.deepEqual(diffs[0], { type: "diff", path: join(workspace, "a.py"), oldText: "A = 1\n", newText: "A = 2\n" });
  // One question per file: its own diff, its absolute path as the location, its relative title.
  assert.deepEqual(
    permissions.map(({ toolCall }) => [
      toolCall.title,
      toolCall.kind,
      toolCall.content.map((c) => [c.type, c.path]),
      toolCall.locations.map((l) => l.path),
    ]),
    [
      ["Edit a.py", "edit", [["diff", join(workspace, "a.py")]], [join(workspace, "a.py")]],
      ["Create b.py", "edit", [["diff", join(workspace, "b.py")]], [join(workspace, "b.py")]],
    ],
  );
  for (const { options } of permissions) {
    assert.deepEqual(options.map((o) => o.kind), ["allow_once", "allow_always", "reject_once"]);
  }
  // No chunk of the final answer before the last permission answer.
  const lastAnswer = timeline.findLastIndex(([what]) => what === "answer");
  const after = timeline
    .slice(lastAnswer)
    .filter(([what, u]) => what === "update" && u.sessionUpdate === "agent_message_chunk")
    .map(([, u]) => u.content.text)
    .join("");
  assert.equal(after, "I set A to 2 and added b.py, which builds on it.");
  assert.ok(reads.includes(join(workspace, "a.py")));
  assert.deepEqual(writes.map(([p]) => p).sort(), [join(workspace, "a.py"), join(workspace, "b.py")]);
  assert.equal(readFileSync(join(workspace, "a.py"), "utf8"), "A = 2\n");
});
