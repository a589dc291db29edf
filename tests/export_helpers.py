"""Helpers for the exporter tests: random-weight models with non-trivial BN statistics, ORT runs."""

from __future__ import annotations

import numpy as np


def randomize_bn(model, seed: int = 0):
    """Give every BatchNorm non-identity running stats and affine params (eval semantics matter)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def make_model(preset: str = "tiny", seed: int = 0):
    import torch

    from codedresnext.model import create_model

    torch.manual_seed(seed)
    return randomize_bn(create_model(preset), seed)


def session(model_proto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(model_proto, feeds: dict) -> dict[str, np.ndarray]:
    s = session(model_proto)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, feeds)))


def preprocess(frames: np.ndarray, cfg) -> np.ndarray:
    x = frames.astype(np.float32) / 255.0
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def torch_logits(model, x: np.ndarray, keep_classes=None) -> np.ndarray:
    """The masked PyTorch reference: model(x, keep_classes=...) logits of those classes."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x), keep_classes=keep_classes).logits
    if keep_classes is not None:
        out = out[:, list(keep_classes)]
    return out.numpy()
