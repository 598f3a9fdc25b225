"""`glm-lsp doctor --distributed`: the plan is read from config figures, never from weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from glm_lsp.cli import main


def test_glm47_on_two_256_gb_macs_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--distributed", "pipeline", "--ranks", "2", "--memory-per-host", "256"])
    out = capsys.readouterr().out
    assert code == 0
    assert "92 layers" in out and "397.0 GB of weights" in out
    assert "rank 0 (host1): layers 46-91 (46)" in out  # mlx-lm gives rank 0 the last layers
    assert "rank 1 (host2): layers 0-45 (46)" in out
    assert "of 256 GB: fits" in out and "does not fit" not in out
    assert "mlx.launch --hostfile hosts.json --backend ring -- glm-lsp serve --tcp" in out


def test_tensor_split_that_mlx_lm_would_refuse_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["doctor", "--distributed", "tensor", "--hosts", "a,b,c", "--memory-per-host", "192"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "8 KV heads do not split over 3 ranks" in out
    assert "rank 2 (c): 1/3 of every layer" in out


def test_a_local_config_plans_any_model(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["doctor", "--distributed", "pipeline", "--ranks", "2", "--model-config"]
    assert main([*argv, str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 layers" in out and "rank 0 (host1): layers 1-1 (1)" in out


def test_one_host_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--distributed", "pipeline", "--hosts", "solo"]) == 2
    assert "two hosts or more" in capsys.readouterr().err
