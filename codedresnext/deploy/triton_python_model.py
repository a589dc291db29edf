"""Triton Python-backend model (copied as REPO/<model>/1/model.py by `codedresnext triton --python`).

It runs the project's own runtime, so a served answer is the in-process answer: SubsetDetector for a
class / subset detector (outputs "score" and "decision" at the manifest thresholds) and
EarlyExitClassifier for the cascade (the segments in turn, exit decisions on the host; outputs
"prediction", "exit_index", "flops"). The graphs and their manifest subset sit beside this file.
Requests that Triton's dynamic batcher hands over together are run as one batch; a request with a
non-finite value gets its own error response and the others are still answered. The server's
Python must import `codedresnext` (torch-free install) and `triton_python_backend_utils`.
Tensors cross the stub boundary by DLPack, not as_numpy() / Tensor(name, array): a stub built
against numpy 1 reads numpy 2 arrays wrongly there (zero strides in, zero bytes out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class TritonPythonModel:
    """The class name Triton's Python backend looks for."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # only inside the server

        from codedresnext.runtime import EarlyExitClassifier, SubsetDetector

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = Path(args["model_repository"]) / str(args["model_version"])
        threads = int(params.get("threads", "1"))
        self.kind = params["codedresnext_kind"]
        self.input = config["input"][0]["name"]
        if self.kind == "cascade":
            self.model = EarlyExitClassifier.from_directory(here, threads=threads)
        else:
            self.model = SubsetDetector(here, params["graph"], threads=threads)

    def _outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.kind == "cascade":
            r = self.model.predict(x)
            return {
                "prediction": r.predictions.astype(np.int64)[:, None],
                "exit_index": r.exit_index.astype(np.int64)[:, None],
                "flops": r.flops.astype(np.float64)[:, None],
            }
        scores = self.model.score(x).astype(np.float32)
        return {"score": scores, "decision": scores > self.model.thresholds}

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses: list[Any] = [None] * len(requests)
        good, arrays = [], []
        for i, req in enumerate(requests):
            x = np.from_dlpack(pb.get_input_tensor_by_name(req, self.input))
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                responses[i] = pb.InferenceResponse(
                    error=pb.TritonError(
                        f"input {self.input!r} has NaN or infinite values; send finite pixels"
                    )
                )
                continue
            good.append(i)
            arrays.append(x)
        if not good:
            return responses
        try:
            out = self._outputs(np.concatenate(arrays))
        except Exception as e:  # the runtime's own message (GraphError...) goes back to each client
            for i in good:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"{type(e).__name__}: {e}"))
            return responses
        start = 0
        for i, x in zip(good, arrays):
            part = {k: np.ascontiguousarray(v[start : start + len(x)]) for k, v in out.items()}
            start += len(x)
            responses[i] = pb.InferenceResponse(
                output_tensors=[pb.Tensor.from_dlpack(k, v) for k, v in part.items()]
            )
        return responses

    def finalize(self) -> None:
        self.model.close()
