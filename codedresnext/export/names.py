"""Stable, deterministic initializer names (one place, shared by builder, pruner and counters).

Folded weights live under these names in every graph, so the pruner finds a block's tensors by
name and two exports of one checkpoint are byte-identical.
"""

from __future__ import annotations

STEM_W, STEM_B = "stem/conv.weight", "stem/conv.bias"
FC_W = "head/fc.weight"  # (K, C): row k = class k


def w(block: int, part: str) -> str:
    """part in reduce|conv|expand|shortcut: BN-folded conv weight."""
    return f"block{block}/{part}.weight"


def b(block: int, part: str) -> str:
    """Bias of a BN-folded conv (stands for that BN's gamma and beta)."""
    return f"block{block}/{part}.bias"


def gram(block: int) -> str:
    """(N*d, d, 1, 1) per-branch Gram matrices W_n^T W_n of the unfolded expand weight."""
    return f"block{block}/gram"


def expand_align(block: int) -> str:
    """The Pad node (and its output) that zero-pads the expand conv's input channels (builder._expand)."""
    return f"block{block}/expand_align"


def expand_align_block(node_name: str) -> int | None:
    """The block index of an `expand_align` Pad node's name, else None."""
    head, _, tail = node_name.partition("/")
    ok = tail == "expand_align" and head.startswith("block") and head[5:].isdigit()
    return int(head[5:]) if ok else None


def is_parameter(name: str) -> bool:
    """Initializers that are model parameters (weights/biases), not derived constants."""
    return name.endswith(".weight") or name.endswith(".bias")
