"""`glm-lsp convert`: a Hugging Face checkpoint to MLX by the seed's 8-bit group-size-32 recipe."""

from __future__ import annotations

from pathlib import Path


class ConvertError(ValueError):
    """A conversion that cannot start; the message is one sentence saying how to fix it."""


def convert(hf_path: str, out_dir: Path, q_bits: int = 8, q_group_size: int = 32) -> None:
    """Quantise the local checkpoint at hf_path into out_dir through `mlx_lm.convert`."""
    src, out_dir = Path(hf_path).expanduser(), Path(out_dir).expanduser()
    # Checked here because mlx-lm would treat a missing path as a Hub repo id and try to download.
    if not src.is_dir():
        raise ConvertError(f"{hf_path} is not a directory; pass a local Hugging Face checkpoint.")
    if not (src / "config.json").is_file():
        raise ConvertError(f"{src} has no config.json; pass a Hugging Face checkpoint directory.")
    if out_dir.exists():
        raise ConvertError(f"{out_dir} already exists; delete it or choose a new output directory.")
    if q_bits not in (2, 3, 4, 5, 6, 8) or q_group_size not in (32, 64, 128):
        raise ConvertError("q_bits must be one of 2-6 or 8 and q_group_size one of 32, 64, 128.")

    from mlx_lm.convert import convert as mlx_convert

    mlx_convert(
        hf_path=str(src),
        mlx_path=str(out_dir),
        quantize=True,
        q_bits=q_bits,
        q_group_size=q_group_size,
    )
