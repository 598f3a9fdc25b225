"""The tiny GLM-4 MoE: mlx-lm loads, generates and serves it like GLM-4.7; its template is exact."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_lm.tool_parsers import glm47

from glm_lsp import tiny_model
from glm_lsp.convert import ConvertError, convert
from glm_lsp.tiny_model import SPECIAL_TOKENS, ensure_tiny_model, make_tiny_model
from tests.reference_template import reference_render

SCRIPT = (
    "I should read a.py.</think>Reading it.<tool_call>read_file<arg_key>path</arg_key>"
    "<arg_value>a.py</arg_value></tool_call>"
)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path) -> tuple[Any, Any]:
    return mlx_lm.load(str(tiny_model_dir))


def test_config_is_an_8bit_gs32_glm4_moe(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "glm4_moe"
    assert config["quantization"] == {"group_size": 32, "bits": 8, "mode": "affine"}
    assert config["vocab_size"] % 32 == 0 and config["hidden_size"] % 32 == 0
    assert config["first_k_dense_replace"] == 1 and config["n_shared_experts"] == 1
    assert config["num_experts_per_tok"] == 2 and config["partial_rotary_factor"] == 0.5
    assert config["use_qk_norm"] is True
    assert "0.84M parameters, 8-bit group size 32" in tiny_model.summary(tiny_model_dir)
    tok_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == tiny_model.chat_template()


def test_load_infers_glm47_tools_thinking_and_stop_tokens(
    tiny_model_dir: Path, loaded: tuple[Any, Any]
) -> None:
    _, tok = loaded
    stop_ids = [
        tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")
    ]
    assert tok.eos_token_ids == set(stop_ids)
    assert json.loads((tiny_model_dir / "config.json").read_text())["eos_token_id"] == stop_ids
    gen_config = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert gen_config["eos_token_id"] == stop_ids
    assert tok.tool_parser is glm47.parse_tool_call
    assert tok.has_thinking and tok.think_start_id == tok.convert_tokens_to_ids("<think>")
    assert tok.think_end_id == tok.convert_tokens_to_ids("</think>")
    assert tok.tool_call_start == "<tool_call>"


def test_special_tokens_are_single_tokens(loaded: tuple[Any, Any]) -> None:
    model, tok = loaded
    ids = [tok.encode(t, add_special_tokens=False) for t in SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids), ids
    assert len({i[0] for i in ids}) == len(SPECIAL_TOKENS)
    assert len(tok) <= model.args.vocab_size
    # Markup survives decode(skip_special_tokens=True); only the role tokens are dropped.
    ids = tok.encode("<|user|>" + SCRIPT + "<|observation|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == SCRIPT


ROUND_TRIP = [
    "",
    "def f(x):\n\treturn x  # ok\r\n",
    "  leading and trailing spaces  ",
    "héllo wörld — 日本語のテキスト 😀👩‍💻 \u200b\x00\x7f",
    "[gMASK]<sop><|system|>s<|user|>u<|assistant|><think>t</think>c<|observation|>",
    SCRIPT + "<tool_response>r</tool_response><|endoftext|>",
    "<think<|user|>>><arg_keyx</arg_value>",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_encode_decode_round_trips(loaded: tuple[Any, Any], text: str) -> None:
    _, tok = loaded
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # mlx-lm's streaming detokenizer drops a reply's leading space (its BPE convention) and
    # mangles NUL bytes (it tests bytes for truthiness), so those two are kept out of this check.
    text = "x" + text.replace("\x00", "")
    detok = tok.detokenizer
    detok.reset()
    for i in tok.encode(text, add_special_tokens=False):
        detok.add_token(i)
    detok.finalize()
    assert detok.text == text


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8"))
    | st.lists(st.sampled_from(SPECIAL_TOKENS)).map("".join)
)
def test_any_text_round_trips(loaded: tuple[Any, Any], text: str) -> None:
    _, tok = loaded
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_stream_generate_produces_text(loaded: tuple[Any, Any]) -> None:
    model, tok = loaded
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True
    )
    replies = list(mlx_lm.stream_generate(model, tok, prompt, max_tokens=12))
    assert replies and replies[-1].generation_tokens == len(replies)
    assert "".join(r.text for r in replies)


def test_stream_generate_keeps_markup_tokens(loaded: tuple[Any, Any]) -> None:
    model, tok = loaded
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True
    )
    stop = tok.convert_tokens_to_ids("<|observation|>")
    script = [*tok.encode(SCRIPT, add_special_tokens=False), stop]

    def force(tokens: mx.array, logits: mx.array) -> mx.array:
        # Scripted reply: only the next scripted token may be sampled (mlx-lm computes one step
        # past the stop token before it stops, hence the clamp).
        want = script[min(tokens.size - len(prompt), len(script) - 1)]
        return mx.where(mx.arange(logits.shape[-1]) == want, 0.0, -mx.inf)[None]

    replies = list(
        mlx_lm.stream_generate(model, tok, prompt, max_tokens=100, logits_processors=[force])
    )
    assert "".join(r.text for r in replies) == SCRIPT
    assert replies[-1].finish_reason == "stop"
    assert tok.tool_parser("read_file<arg_key>path</arg_key><arg_value>a.py</arg_value>", None) == {
        "name": "read_file",
        "arguments": {"path": "a.py"},
    }


# --- chat template vs the official GLM-4.7 template --------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Lit un fichier — «exact»",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "start": {"type": "integer"}},
                "required": ["path"],
            },
        },
    },
    {"type": "function", "function": {"name": "list_files", "parameters": {"type": "object"}}},
]


def _call(name: str, **args: Any) -> dict[str, Any]:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": args}}


U1, U2 = {"role": "user", "content": "Rename load."}, {"role": "user", "content": "Now explain it."}
READ = _call("read_file", path="a.py", start=3)
ODD = _call("edit", path="é.py", flags=[1, "ü", None], opts={"dry": True, "n": 1.5}, ok=False)
CONVERSATIONS: list[tuple[list[dict[str, Any]], list[dict] | None]] = [
    ([U1], None),
    ([{"role": "system", "content": "You are terse."}, U1], TOOLS),
    ([U1, {"role": "assistant", "content": "Done."}, U2], None),
    ([U1, {"role": "assistant", "content": "Done.", "reasoning_content": "Easy."}, U2], TOOLS),
    (
        [
            U1,
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "Read first.",
                "tool_calls": [READ],
            },
            {"role": "tool", "content": "def load(): ..."},
            {"role": "assistant", "content": "Renamed.", "reasoning_content": "Now edit."},
        ],
        TOOLS,
    ),
    (
        [
            U1,
            {"role": "assistant", "content": "Two reads.", "tool_calls": [READ, ODD]},
            {"role": "tool", "content": "one"},
            {"role": "tool", "content": "two"},
            {"role": "tool", "content": "three"},
            {"role": "assistant", "content": "ok"},
        ],
        TOOLS,
    ),
    ([U1, {"role": "assistant", "content": "<think>\ninline\n</think>\n\nanswer"}, U2], None),
    ([U1, {"role": "assistant", "content": None, "tool_calls": [READ]}], TOOLS),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}, "b", {"type": "image"}]}], None),
    (
        [
            U1,
            {"role": "assistant", "content": "A", "reasoning_content": "r1"},
            U2,
            {"role": "assistant", "content": "B", "reasoning_content": "r2"},
            {"role": "user", "content": "third"},
        ],
        None,
    ),
    (
        [
            U1,
            {
                "role": "assistant",
                "content": "x",
                "tool_calls": [{"name": "list_files", "arguments": {}}],
            },
        ],
        TOOLS,
    ),
    ([U1, {"role": "assistant", "content": "x", "reasoning_content": ""}], None),
    (
        [
            U1,
            {"role": "assistant", "content": "\n  padded \n", "reasoning_content": "\n  why \n\n"},
        ],
        None,
    ),
    (
        [
            {"role": "user", "content": "日本語 😀 «»"},
            {"role": "assistant", "content": "ü", "reasoning_content": "ß"},
        ],
        TOOLS,
    ),
    ([U1, {"role": "assistant", "content": "final"}], None),
    ([U1, {"role": "tool", "content": [{"output": "o1"}, "o2"]}], None),
    ([U1, {"role": "tool", "content": "early"}, {"role": "tool", "content": "result"}], None),
    ([U1, {"role": "system", "content": "Mid-way note."}, U2], None),
    (
        [
            U1,
            {
                "role": "assistant",
                "content": "  \n",
                "reasoning_content": "r",
                "tool_calls": [READ],
            },
        ],
        TOOLS,
    ),
    ([{"role": "user", "content": "<tool_call>x</tool_call> {{ not jinja }} {% raw %}"}], None),
    ([], TOOLS),
]
KWARGS = [
    {},
    {"add_generation_prompt": True},
    {"add_generation_prompt": True, "enable_thinking": False},
    {"add_generation_prompt": True, "enable_thinking": True, "clear_thinking": False},
    {"clear_thinking": True},
    {"add_generation_prompt": False, "clear_thinking": False, "enable_thinking": False},
]


@pytest.mark.parametrize(
    "kwargs", KWARGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
@pytest.mark.parametrize(
    ("messages", "tools"), CONVERSATIONS, ids=[f"conv{i}" for i in range(len(CONVERSATIONS))]
)
def test_chat_template_matches_reference(
    messages: list[dict[str, Any]], tools: list[dict] | None, kwargs: dict[str, Any]
) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    expected = reference_render(messages, tools, **kwargs)
    (ours,), _ = render_jinja_template(
        [messages], tools=tools, chat_template=tiny_model.chat_template(), **kwargs
    )
    assert ours == expected


def test_loaded_tokenizer_renders_the_reference_format(loaded: tuple[Any, Any]) -> None:
    _, tok = loaded
    messages, tools = CONVERSATIONS[9]
    kwargs = {"add_generation_prompt": True, "clear_thinking": False}
    rendered = tok.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)
    assert rendered == reference_render(messages, tools, enable_thinking=True, **kwargs)
    assert "<think>r1</think>" in rendered


# --- mlx_lm.server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlx_lm_server_answers_chat_completion(
    tiny_model_dir: Path, loaded: tuple[Any, Any], tmp_path: Path
) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"
    messages = [{"role": "user", "content": "hi"}]
    body = {"messages": messages, "max_tokens": 8, "temperature": 0.0, "tools": TOOLS}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    cmd = [sys.executable, "-m", "mlx_lm", "server", "--model", str(tiny_model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"server exited early:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    reply = json.load(response)
                break
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"no answer:\n{log_path.read_text()}"
                time.sleep(0.3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    choice = reply["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["role"] == "assistant"
    # The server rendered our template: same prompt length as rendering it here.
    prompt = loaded[1].apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True)
    assert reply["usage"]["prompt_tokens"] == len(prompt)
    assert 0 < reply["usage"]["completion_tokens"] <= 8


# --- building, caching, converting --------------------------------------------------------------

SMALL = {"hidden": 64, "layers": 1, "experts": 2}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ensure_tiny_model_reuses_and_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_tiny_model(tmp_path, **SMALL)
    weights = _sha(first / "model.safetensors")
    model, tok = mlx_lm.load(str(first))  # a single MoE layer (no dense layer) loads too
    assert model.args.first_k_dense_replace == 0 and "<think>" in tok.get_vocab()

    def no_build(*args: Any, **kw: Any) -> Path:
        raise AssertionError("rebuilt a cached model")

    with monkeypatch.context() as m:
        m.setattr(tiny_model, "make_tiny_model", no_build)
        assert ensure_tiny_model(tmp_path, **SMALL) == first
        with pytest.raises(AssertionError, match="rebuilt"):
            ensure_tiny_model(tmp_path, **SMALL, seed=1)

    # A stale marker (older build) is rebuilt in place; the same seed gives the same bytes.
    marker = first / tiny_model.MARKER
    marker.write_text(marker.read_text().replace('"version": ', '"version": -'))
    assert ensure_tiny_model(tmp_path, **SMALL) == first
    assert _sha(first / "model.safetensors") == weights
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_make_tiny_model_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        make_tiny_model(tmp_path, hidden=100)
    with pytest.raises(ValueError, match="heads must be at least 1"):
        make_tiny_model(tmp_path, heads=0)
    with pytest.raises(ValueError, match="kv_heads must be from 1 to the 1 attention heads"):
        make_tiny_model(tmp_path, heads=1, kv_heads=2)
    assert not any(tmp_path.iterdir())


def test_the_suites_model_has_one_attention_head(tiny_model_dir: Path) -> None:
    """The fixture's model asks for one head (a 2.4x faster prefill here) and is named for it."""
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["num_attention_heads"] == config["num_key_value_heads"] == 1
    assert config["head_dim"] == 64  # KV quantization groups of 64 still fit a head
    assert tiny_model_dir.name.endswith("-a1")


def test_convert_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="not a directory"):
        convert(str(tmp_path / "missing"), tmp_path / "out")
    with pytest.raises(ConvertError, match=r"no config\.json"):
        convert(str(tmp_path), tmp_path / "out")


def test_convert_quantises_a_float_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    from mlx_lm.utils import dequantize_model, save

    model, tok, config = mlx_lm.load(str(tiny_model_dir), return_config=True)
    config.pop("quantization")
    config.pop("quantization_config")
    save(tmp_path / "hf", tiny_model_dir, dequantize_model(model), tok, config)
    assert "quantization" not in json.loads((tmp_path / "hf" / "config.json").read_text())

    convert(str(tmp_path / "hf"), tmp_path / "mlx")
    config = json.loads((tmp_path / "mlx" / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": 8, "mode": "affine"}
    model, tok = mlx_lm.load(str(tmp_path / "mlx"))
    assert tok.tool_parser is glm47.parse_tool_call
    with pytest.raises(ConvertError, match="already exists"):
        convert(str(tmp_path / "hf"), tmp_path / "mlx")
