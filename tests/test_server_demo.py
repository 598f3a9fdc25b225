"""`glm-lsp demo` end to end: the tiny model, scripted replies, a real LSP session."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
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


def test_demo_runs_from_a_wheel_not_the_source_tree(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`pip install glm-lsp` then `glm-lsp demo`: the demo workspace ships as package data."""
    repo = Path(__file__).resolve().parents[1]
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(wheels), str(repo)], check=True, timeout=300)
    (wheel,) = wheels.glob("glm_lsp-*.whl")
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)  # what pip does with a pure-Python wheel
    # PYTHONPATH comes before the editable install: the demo and its server run from the wheel.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(installed)}
    where = [sys.executable, "-c", "import glm_lsp; print(glm_lsp.__file__)"]
    located = subprocess.run(where, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert located.stdout.startswith(str(installed)), located
    cmd = [sys.executable, "-m", "glm_lsp.cli", "demo", "--cache-dir", str(tiny_model_dir.parent)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "+++ b/shop/discounts.py" in done.stdout
