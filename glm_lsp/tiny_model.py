"""A random-weight GLM-4 MoE small enough for tests and demos.

It has GLM-4.7's architecture (``glm4_moe``: partial RoPE, QK-norm, a dense first layer, a shared
expert, sigmoid top-k routing), its 8-bit group-size-32 quantisation, its special tokens and chat
template, so every code path that serves the real model runs unchanged, in seconds, on a CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

# Bump when the files written change, so cached models are rebuilt.
BUILD_VERSION = 1
MARKER = "glm_lsp_tiny_model.json"
VOCAB_SIZE = 2048
HEAD_DIM = 64
Q_BITS = 8
Q_GROUP_SIZE = 32

# GLM-4.7's role tokens: hidden by decode(skip_special_tokens=True), as in the real tokenizer.
ROLE_TOKENS = [
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
]
# Markup the parser must see in the decoded text, so these are not "special".
MARKUP_TOKENS = [
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
]
SPECIAL_TOKENS = ROLE_TOKENS + MARKUP_TOKENS
STOP_TOKENS = ["<|endoftext|>", "<|user|>", "<|observation|>"]

_SNIPPETS = r'''
def read_file(path: str) -> str:
    """Return the text of a file in the workspace."""
    with open(path, encoding="utf-8") as f:
        return f.read()

class Workspace:
    def __init__(self, root: Path, files: list[str] | None = None) -> None:
        self.root = root
        self.files = files or []

    async def search(self, query: str, *, limit: int = 20) -> list[dict]:
        results = [f for f in self.files if query in f]
        return results[:limit]

function renameSymbol(oldName, newName) {
  const edits = [];
  for (const file of workspace.files) {
    if (file.text.includes(oldName)) edits.push({ uri: file.uri, newText: newName });
  }
  return edits;
}
export interface Range { start: Position; end: Position }
func (s *Server) Handle(ctx context.Context, req *Request) (*Response, error) {
	if err := s.validate(req); err != nil {
		return nil, fmt.Errorf("invalid request: %w", err)
	}
	return &Response{ID: req.ID}, nil
}
fn parse_line(line: &str) -> Result<Vec<String>, Error> {
    let parts: Vec<String> = line.split(',').map(|s| s.trim().to_string()).collect();
    Ok(parts)
}
int main(int argc, char **argv) { printf("%d\n", argc); return 0; }
local function setup(opts) vim.lsp.enable("glm_lsp") return opts end
{"jsonrpc": "2.0", "id": 1, "method": "textDocument/codeAction", "params": {"range": null}}
# Refactor: extract the loop into a helper function and update every caller.
I should read a.py first, then rename the function and fix the imports in b.py.
The user wants to explain this code. It defines a class with two methods.
<tool_call>read_file<arg_key>path</arg_key><arg_value>src/main.py</arg_value></tool_call>
<|user|>Rename `load` to `load_config`.<|assistant|><think>Find the callers.</think>Done.
'''

_WORDS = (
    "get set add remove update create delete find load save read write parse format check "
    "build run open close start stop send handle process render apply make init reset user "
    "file path name value key item list dict config request response error result index node "
    "tree line text token model cache state data buffer range position edit change symbol "
    "workspace document server client message thinking tool call args count size offset"
)


def _corpus() -> list[str]:
    """Fixed code-ish training text: snippets plus seeded identifiers in several styles."""
    rng = random.Random(0)
    words = _WORDS.split()
    lines = _SNIPPETS.splitlines()
    for _ in range(3000):
        a, b, c = rng.choice(words), rng.choice(words), rng.choice(words)
        lines.append(f"    {a}_{b} = self.{b}{c.title()}({c}, {a}_{c}=None)  # {a} the {b} {c}s")
    return lines


def _build_tokenizer() -> Any:
    """Byte-level BPE (any text round-trips) with GLM-4.7's special tokens as single ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ROLE_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    return tok


def chat_template() -> str:
    return resources.files("glm_lsp.glm").joinpath("chat_template.jinja").read_text("utf-8")


def _round_up(x: int, m: int = Q_GROUP_SIZE) -> int:
    return -(-x // m) * m


def model_config(
    hidden: int,
    layers: int,
    experts: int,
    vocab_size: int,
    kv_heads: int | None = None,
    heads: int | None = None,
) -> dict[str, Any]:
    """glm4_moe config with GLM-4.7's proportions scaled down (heads*head_dim = 2x hidden).
    `kv_heads`: e.g. 2, so tensor parallelism over two ranks can split them (default 1/8).
    `heads`: fewer attention heads than the proportions give; on a CPU with reference BLAS
    attention is most of a long prefill, so the test suite's model has as few as it can."""
    if hidden < 64 or hidden % Q_GROUP_SIZE:
        raise ValueError(f"hidden must be a multiple of {Q_GROUP_SIZE} and at least 64.")
    if layers < 1 or experts < 2:
        raise ValueError("layers must be at least 1 and experts at least 2.")
    if heads is not None and heads < 1:
        raise ValueError("heads must be at least 1.")
    heads = heads or max(2, 2 * hidden // HEAD_DIM)
    if kv_heads is not None and not 1 <= kv_heads <= heads:
        raise ValueError(f"kv_heads must be from 1 to the {heads} attention heads.")
    kv_heads = kv_heads or max(1, heads // 8)
    while heads % kv_heads:
        kv_heads -= 1
    return {
        "architectures": ["Glm4MoeForCausalLM"],
        "model_type": "glm4_moe",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": _round_up(hidden * 5 // 2),
        "moe_intermediate_size": _round_up(hidden * 3 // 10),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": HEAD_DIM,
        "partial_rotary_factor": 0.5,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "max_position_embeddings": 202752,
        "rms_norm_eps": 1e-05,
        "use_qk_norm": True,
        "attention_bias": True,
        "tie_word_embeddings": False,
        "n_routed_experts": experts,
        "n_shared_experts": 1,
        "num_experts_per_tok": min(2, experts),
        "first_k_dense_replace": 1 if layers > 1 else 0,
        "n_group": 1,
        "topk_group": 1,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "topk_method": "noaux_tc",
        "num_nextn_predict_layers": 0,
        "torch_dtype": "float32",
    }


def _tokenizer_config(tok: Any) -> dict[str, Any]:
    decoder = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in ROLE_TOKENS,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": decoder,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "model_max_length": 202752,
        "padding_side": "left",
        "remove_space": False,
        "chat_template": chat_template(),
    }


def _params(
    seed: int,
    hidden: int,
    layers: int,
    experts: int,
    kv_heads: int | None = None,
    heads: int | None = None,
) -> dict[str, Any]:
    template_sha = hashlib.sha256(chat_template().encode()).hexdigest()[:16]
    extra = {"kv_heads": kv_heads} if kv_heads else {}  # unchanged markers for older builds
    extra |= {"heads": heads} if heads else {}
    return extra | {
        "version": BUILD_VERSION,
        "seed": seed,
        "hidden": hidden,
        "layers": layers,
        "experts": experts,
        "chat_template_sha": template_sha,
    }


def make_tiny_model(
    out_dir: Path,
    *,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 2,
    experts: int = 4,
    kv_heads: int | None = None,
    heads: int | None = None,
) -> Path:
    """Write the tiny model into out_dir (created if needed, files overwritten) and return it.

    Deterministic for a given seed; note that it reseeds MLX's global random generator.
    """
    import mlx.core as mx
    from mlx_lm.models.glm4_moe import Model, ModelArgs
    from mlx_lm.utils import quantize_model, save_config, save_model

    out_dir = Path(out_dir)
    config = model_config(hidden, layers, experts, VOCAB_SIZE, kv_heads, heads)  # validates first
    tok = _build_tokenizer()
    config["vocab_size"] = _round_up(tok.get_vocab_size())
    stop_ids = [tok.token_to_id(t) for t in STOP_TOKENS]
    config |= {"eos_token_id": stop_ids, "pad_token_id": stop_ids[0]}

    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(config))
    # mlx-lm starts the router at zero; random router weights make the chosen experts vary.
    for layer in model.model.layers:
        if (gate := getattr(layer.mlp, "gate", None)) is not None:
            gate.weight = mx.random.normal(gate.weight.shape) * hidden**-0.5
    # Kept float32, not GLM-4.7's bfloat16: MLX's CPU quantised matmul is ~7x slower with bf16.
    with contextlib.redirect_stdout(io.StringIO()):  # quantize_model prints bits per weight
        model, config = quantize_model(model, config, Q_GROUP_SIZE, Q_BITS)

    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(out_dir, model)
    save_config(config, out_dir / "config.json")
    tok.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(tok))
    _write_json(
        out_dir / "special_tokens_map.json",
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    )
    _write_json(
        out_dir / "generation_config.json",
        {"eos_token_id": stop_ids, "pad_token_id": stop_ids[0], "temperature": 1.0, "top_p": 0.95},
    )
    _write_json(out_dir / MARKER, _params(seed, hidden, layers, experts, kv_heads, heads))
    return out_dir


def summary(model_dir: Path) -> str:
    """One line for the CLI to print, e.g. "glm4_moe, 2 layers, hidden 128, ... 1.2 MB"."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    q = config["quantization"]
    size = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file())
    return (
        f"{config['model_type']}, {config['num_hidden_layers']} layers, "
        f"hidden {config['hidden_size']}, {config['n_routed_experts']} experts, "
        f"{index['metadata']['total_parameters'] / 1e6:.2f}M parameters, "
        f"{q['bits']}-bit group size {q['group_size']}, {size / 1e6:.1f} MB"
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _is_built(model_dir: Path, params: dict[str, Any]) -> bool:
    try:
        return json.loads((model_dir / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


def ensure_tiny_model(cache_dir: Path, **kw: Any) -> Path:
    """Return a tiny model under cache_dir built with these parameters, building it only once.

    The model is built in a temporary directory and renamed into place, so a concurrent or
    interrupted build never leaves a half-written model where a reader would take it.
    """
    opts = {"seed": 0, "hidden": 128, "layers": 2, "experts": 4} | kw
    params = _params(**opts)
    cache_dir = Path(cache_dir)
    name = "glm4-moe-tiny-s{seed}-h{hidden}-l{layers}-e{experts}".format(**opts)
    name += f"-a{opts['heads']}" if opts.get("heads") else ""
    target = cache_dir / (name + (f"-kv{opts['kv_heads']}" if opts.get("kv_heads") else ""))
    if _is_built(target, params):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        make_tiny_model(tmp, **opts)
        tmp.chmod(0o755)  # mkdtemp makes it private; a shared test cache should be readable
        if target.exists():  # stale build (older version or template): move it aside first
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=cache_dir))
            os.replace(target, stale / "model")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_built(target, params):  # not a concurrent builder winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
