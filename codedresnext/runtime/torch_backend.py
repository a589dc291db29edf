"""PyTorch eager backend: the reference and a benchmark peer, rebuilt from DIR/source.pt.

torch is imported only inside `_load`, so importing the runtime never needs it. The model takes
"images" (batch, 3, H, W) float32 and returns "logits", like the full ONNX graph.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import INPUT_FLOAT, OUTPUT_LOGITS
from .backend import Backend, TensorSpec, require


class TorchBackend(Backend):
    name = "torch"

    def _load(
        self,
        path: Path,
        *,
        threads: int | None = None,
        device: str = "cpu",
        keep_classes: list[int] | None = None,
        **_: Any,
    ) -> None:
        torch = require("torch", "torch", "the PyTorch backend")
        from ..checkpoint import load_checkpoint

        self.threads = int(threads or os.cpu_count() or 1)
        torch.set_num_threads(self.threads)
        self._torch = torch
        self.device = torch.device(device)
        model, _ = load_checkpoint(path)
        self.model = model.eval().to(self.device)
        self.keep_classes = keep_classes
        s = model.cfg.input_size
        self.inputs = [TensorSpec(INPUT_FLOAT, np.dtype(np.float32), (None, 3, s, s))]
        self.outputs = [TensorSpec(OUTPUT_LOGITS, np.dtype(np.float32), (None, model.cfg.num_classes))]

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(feeds[INPUT_FLOAT]).to(self.device)
            logits = self.model(x, keep_classes=self.keep_classes).logits
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {OUTPUT_LOGITS: logits.float().cpu().numpy()}

    def info(self) -> dict:
        return {
            "backend": self.name,
            "torch": self._torch.__version__,
            "threads": self.threads,
            "device": str(self.device),
        }
