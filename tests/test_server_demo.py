"""`glm-lsp demo` end to end: the tiny model, scripted replies, a real LSP session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_explain_and_multi_file_refactor(tiny_model_dir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glm_lsp.cli", "demo", "--cache-dir", str(tiny_model_dir.parent)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "random weights" in out and "--backend openai" in out
    assert "GLM: Explain     -> glm.explain" in out
    assert "Cart.total returns the cart's price with tax" in out
    assert "-def compute_total(" in out and "+def order_total(" in out
    assert "+++ b/shop/discounts.py" in out
    assert "preserved-thinking log:" in out and "reused from the KV cache" in out
