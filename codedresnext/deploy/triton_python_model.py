"""Triton Python-backend model (copied as REPO/<model>/1/model.py by `codedresnext triton --python`).

It runs the project's own runtime, so a served answer is the in-process answer: SubsetDetector for a
class / subset detector (outputs "score" and "decision" at the manifest thresholds) and
EarlyExitClassifier for the cascade (the segments in turn, exit decisions on the host; outputs
"prediction", "exit_index", "flops"). The graphs and their manifest subset sit beside this file.
Requests that Triton's dynamic batcher hands over together are run as one batch; a request with a
non-finite value gets its own error response and the others are still answered. The server's
Python must import `codedresnext` (torch-free install) and `triton_python_backend_utils`.
With a "segment_models" parameter the cascade runs each segment as a request to another model of the
same server (BLS), e.g. its TensorRT plan on a GPU Triton; the exit decisions stay here, on the host.
A "graph" model runs one graph and returns every output it declares (a segment for such a cascade).
Tensors cross the stub boundary by DLPack, not as_numpy() / Tensor(name, array): a stub built
against numpy 1 reads numpy 2 arrays wrongly there (zero strides in, zero bytes out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class _BLSSegment:
    """A cascade segment answered by another model of this server (BLS): the local backend gives the
    tensor names and shapes, the other model (a TensorRT plan on a GPU Triton) the outputs."""

    def __init__(self, pb: Any, model: str, local: Any) -> None:
        self.pb, self.model, self.local = pb, model, local
        self.inputs, self.input_names, self.output_names = local.inputs, local.input_names, local.output_names

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        pb, names = self.pb, outputs or self.output_names
        tensors = [pb.Tensor.from_dlpack(k, np.ascontiguousarray(v)) for k, v in feeds.items()]
        resp = pb.InferenceRequest(model_name=self.model, requested_output_names=names, inputs=tensors).exec()
        if resp.has_error():
            raise RuntimeError(f"segment model {self.model!r}: {resp.error().message()}")
        return {n: np.from_dlpack(pb.get_output_tensor_by_name(resp, n)).copy() for n in names}

    def close(self) -> None:
        self.local.close()


class TritonPythonModel:
    """The class name Triton's Python backend looks for."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # only inside the server

        from codedresnext.runtime import EarlyExitClassifier, SubsetDetector, open_backend
        from codedresnext.runtime.api.graphs import resolve_graph

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = Path(args["model_repository"]) / str(args["model_version"])
        threads = int(params.get("threads", "1"))
        self.kind = params["codedresnext_kind"]
        self.inputs = [t["name"] for t in config["input"]]
        self.input = self.inputs[0]
        if self.kind == "cascade":
            self.model = EarlyExitClassifier.from_directory(here, threads=threads)
            if params.get("segment_models"):  # "graph=model,...": each segment answered by that model
                calls = dict(item.split("=", 1) for item in params["segment_models"].split(","))
                self.model.segments = [
                    _BLSSegment(pb_utils, calls[r.name], s)
                    for r, s in zip(self.model.refs, self.model.segments)
                ]
        elif self.kind == "graph":
            self.model = open_backend("ort", resolve_graph(here, params["graph"]).path, threads=threads)
        else:
            self.model = SubsetDetector(here, params["graph"], threads=threads)

    def _outputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.kind == "graph":
            return self.model.infer(feeds)
        x = feeds[self.input]
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
            feeds = {n: np.from_dlpack(pb.get_input_tensor_by_name(req, n)) for n in self.inputs}
            bad = [n for n, x in feeds.items() if x.dtype.kind == "f" and not np.isfinite(x).all()]
            if bad:
                responses[i] = pb.InferenceResponse(
                    error=pb.TritonError(f"input {bad[0]!r} has NaN or infinite values; send finite pixels")
                )
                continue
            good.append(i)
            arrays.append(feeds)
        if not good:
            return responses
        try:
            out = self._outputs({n: np.concatenate([a[n] for a in arrays]) for n in self.inputs})
        except Exception as e:  # the runtime's own message (GraphError...) goes back to each client
            for i in good:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"{type(e).__name__}: {e}"))
            return responses
        start = 0
        for i, feeds in zip(good, arrays):
            n = len(feeds[self.input])
            part = {k: np.ascontiguousarray(v[start : start + n]) for k, v in out.items()}
            start += n
            responses[i] = pb.InferenceResponse(
                output_tensors=[pb.Tensor.from_dlpack(k, v) for k, v in part.items()]
            )
        return responses

    def finalize(self) -> None:
        self.model.close()
