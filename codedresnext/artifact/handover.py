"""How one graph's outputs feed the next one's inputs (segments, reject part A -> part B).

The one place the hand-over naming lives: the exporter names a graph's feature input with
`features_input_name`, the runtime maps it back with `handover_source` / `handover_feed`. Keep the
two directions together.
"""

from __future__ import annotations

from typing import Any

from ..errors import GraphError
from .keys import INPUT_FEATURES_MIDDLE, OUTPUT_FEATURES


def features_input_name(*, head: bool) -> str:
    """Input name of a graph that starts after the stem: "features" when it ends with the head (its
    only feature tensor), "features_in" when it also hands features on (ONNX SSA: one name cannot be
    input and output)."""
    return OUTPUT_FEATURES if head else INPUT_FEATURES_MIDDLE


def handover_source(input_name: str) -> str:
    """The previous graph's output that feeds `input_name` of the next one.

    "features_in" and "features" both take the previous graph's "features"; any other name is passed
    on under its own name (graphs that agree on names, e.g. hand-made ones)."""
    return OUTPUT_FEATURES if input_name in (INPUT_FEATURES_MIDDLE, OUTPUT_FEATURES) else input_name


def handover_feed(outputs: dict[str, Any], input_names: list[str], keep: Any = None) -> dict[str, Any]:
    """{next graph input: previous graph output}, rows `keep` only (host batch compaction) if given."""
    import numpy as np

    feed = {}
    for n in input_names:
        src = handover_source(n)
        if src not in outputs:
            raise GraphError(
                f"the next graph needs {n!r} (from output {src!r}); the previous one outputs "
                f"{sorted(outputs)}"
            )
        feed[n] = outputs[src] if keep is None else np.ascontiguousarray(outputs[src][keep])
    return feed
