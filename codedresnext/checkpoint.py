"""Checkpoints that rebuild their own model: weights + resolved config, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_path
from .errors import CheckpointError, CodedResNeXtError
from .exit_heads import ExitHeads
from .model import CodedResNeXt
from .model_config import ModelConfig

FORMAT = "codedresnext-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, model: CodedResNeXt, **extra: Any) -> None:
    """Save model weights and config (plus optimizer state etc. in `extra`) atomically; the model's
    fitted exit heads (exit_heads.py) go along under "exit_heads"."""
    model = getattr(model, "module", model)
    state = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    if getattr(model, "exit_heads", None) is not None:
        state["exit_heads"] = model.exit_heads.to_state()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's dict (torch.load with weights_only=True), or a CheckpointError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 torch's unpickler raises anything on garbage (IndexError...);
        # its own text advises weights_only=False, which is never the fix here
        raise CheckpointError(
            f"{path} is not a readable codedresnext checkpoint: it looks like {_looks_like(path)}. "
            f"Expected {EXPECTED}."
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a codedresnext checkpoint (no '{FORMAT}' marker). "
            f"Expected {EXPECTED}."
        )
    return state


EXPECTED = (
    "a .pt file written by `codedresnext train` (best.pt / last.pt in its --out folder) or the "
    "source.pt of an export"
)


def _looks_like(path: Path) -> str:
    """What a file that torch cannot load seems to be, from its name and first bytes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file"
    if path.suffix == ".onnx":
        return "an ONNX graph (what export writes, not what it reads)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip / .tar.gz archive (a dataset?)"
    if head.startswith(b"PK"):
        return "a zip archive torch cannot load as plain weights (truncated, corrupt, or holding code)"
    if head[:1] == b"\x80":
        return "a pickle, not a torch zip checkpoint"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "a file of unrecognised bytes (corrupt, or another format)"


def load_checkpoint(
    path: str | os.PathLike, *, expect: ModelConfig | None = None
) -> tuple[CodedResNeXt, dict]:
    """Rebuild the model a checkpoint was trained as; `expect` guards against another architecture."""
    state = read_checkpoint(path)
    if not isinstance(state.get("model"), dict) or not isinstance(state.get("model_config"), dict):
        raise CheckpointError(f"{path} lacks its weights or model config; it is damaged, use another one")
    try:
        cfg = ModelConfig.from_dict(state["model_config"])
    except (CodedResNeXtError, TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from e
    if expect is not None and _arch(expect) != _arch(cfg):
        raise CheckpointError(
            f"{path} holds a {cfg.name!r} model ({_describe(cfg)}) but {expect.name!r} "
            f"({_describe(expect)}) was asked for; pick the matching --preset or another checkpoint"
        )
    model = CodedResNeXt(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the {cfg.name!r} architecture: {e}") from e
    if state.get("exit_heads") is not None:
        model.exit_heads = ExitHeads.from_state(state["exit_heads"], model, str(path))
    return model, state


def _arch(cfg: ModelConfig) -> tuple:
    return (cfg.num_classes, cfg.stem, cfg.stem_channels, cfg.stages)


def _describe(cfg: ModelConfig) -> str:
    st = ", ".join(f"[{s.out_channels},{s.width},{s.active}/{s.branches}]x{s.depth}" for s in cfg.stages)
    return f"{cfg.num_classes} classes, {st}"
