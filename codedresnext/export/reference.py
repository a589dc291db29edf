"""PyTorch reference outputs for any GraphSpec (torch): what ONNX Runtime must reproduce.

Runs the model's own blocks (`CodedBlock.forward(h, keep)`, the code `model(x, keep_classes=...)`
uses), so pruned graphs are checked against the masked reference. The output of the blocks before
the first coded block does not depend on the kept classes and is cached across graphs. What a
graph outputs besides logits / features comes from its kind (kinds/): reject distances at the
probed blocks, exit scores at every coded block or at the last block.
"""

from __future__ import annotations

import numpy as np

from .._optional import lazy
from ..artifact import (
    OUTPUT_EXIT_SCORES,
    OUTPUT_FEATURES,
    OUTPUT_LOGITS,
    exit_energies_name,
    exit_scores_name,
)
from .kinds import EXITS_EVERY, EXITS_LAST, GraphSpec, kind_of

# torch: bound lazily, as the exporter that imports this module is imported by the torch-free CLI
torch = lazy("torch", why="export")
models = lazy("codedresnext.model", why="export")
exit_heads = lazy("codedresnext.exit_heads", why="export")


class Reference:
    def __init__(self, model, images: np.ndarray) -> None:
        """images: (B, 3, H, W) float32, normalised."""

        self.model = model.eval()
        self.x = torch.from_numpy(images)
        first = min(model.coded_blocks, default=len(model.blocks))
        with torch.no_grad():
            h = model.stem(self.x)
            self.prefix = [h]
            for blk in model.blocks[:first]:
                h, _ = blk(h)
                self.prefix.append(h)  # prefix[i] = input of block i

    def __call__(self, spec: GraphSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """-> (graph input: images or features at spec.start, {output name: expected array})."""

        m = self.model
        n = len(m.blocks)
        stop = n if spec.stop is None else spec.stop
        coded_index = {bi: j for j, bi in enumerate(m.coded_blocks)}
        kd = kind_of(spec)
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            i0 = len(self.prefix) - 1
            h = self.prefix[min(i0, spec.start) if spec.start > 0 else i0]
            i_from = min(i0, spec.start) if spec.start > 0 else i0
            feed = self.x if spec.start == 0 else None
            e = None
            for i in range(i_from, stop):
                if i == spec.start and spec.start > 0:
                    feed = h
                blk = m.blocks[i]
                keep = None
                if spec.keep[i] is not None:
                    keep = torch.zeros(blk.branches)
                    keep[list(spec.keep[i])] = 1
                if i in spec.probe:  # all branches: the reject distance of class rows[0]
                    _, e_all = blk(h, None)
                    k = spec.rows[0]
                    dist_name, en_name = kd.probe_names(spec, i)
                    out[dist_name] = models.early_decode(e_all, blk.codewords[k : k + 1])
                    out[en_name] = e_all
                h, e = blk(h, keep)
                if kd.exits == EXITS_EVERY and e is not None and i >= spec.start:
                    j = coded_index[i]
                    out[exit_scores_name(j)] = exit_scores(m, i, h, e)
                    out[exit_energies_name(j)] = e
            if spec.stop is None:
                out[OUTPUT_LOGITS] = m.fc(h.mean((2, 3)))[:, list(spec.rows)]
            else:
                out[OUTPUT_FEATURES] = h
            if kd.exits == EXITS_LAST and e is not None:
                out[OUTPUT_EXIT_SCORES] = exit_scores(m, stop - 1, h, e)
        return feed.numpy(), {k: v.float().numpy() for k, v in out.items()}


def exit_scores(model, block: int, h, energies):
    """Block `block`'s exit scores: its fitted head on the block output h where the model has one
    (exit_heads.py), else softmax(-codeword distance) of the energies (docs/method.md section 6)."""

    heads = getattr(model, "exit_heads", None)
    if heads is not None and block in heads.weights:
        return exit_heads.head_scores(heads, block, h)
    return torch.softmax(-models.early_decode(energies, model.blocks[block].codewords), 1)
