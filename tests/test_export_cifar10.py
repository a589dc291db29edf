"""The cifar10 preset (4.6M parameters): every class graph == masked reference, 2,149,034 params each.

Lean: random weights with non-trivial BN statistics, the full graph built once per module, 2 random
+ 2 real images per class.
"""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import make_model, preprocess, run, torch_logits

from codedresnext.export import kinds
from codedresnext.export.counting import count_params
from codedresnext.export.pruner import load_full_graph, prune


@pytest.fixture(scope="module")
def model_and_full():
    import torch

    from codedresnext.export.builder import build_graph
    from codedresnext.export.fold import fold_weights
    from codedresnext.export.meta import graph_metadata

    torch.set_num_threads(1)
    model = make_model("cifar10", seed=11)
    cfg = model.cfg
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    return model, load_full_graph(build_graph(cfg, fold_weights(model), spec, metadata=meta))


def test_cifar10_every_class_pruned_equals_masked_reference(model_and_full, real_images):
    model, fg = model_and_full
    x = np.concatenate(
        [
            np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32),
            preprocess(real_images.images[:2], model.cfg),
        ]
    )
    assert sum(p.numel() for p in model.parameters()) == 4_638_926
    for k, name in enumerate(model.cfg.class_names):
        g = prune(fg, [name])
        assert count_params(g) == 2_149_034  # 46.3% of 4,638,926 (see the manifest's params definition)
        np.testing.assert_allclose(
            run(g, {"images": x})["logits"], torch_logits(model, x, [k]), rtol=0, atol=1e-4
        )


def test_cifar10_subset(model_and_full, real_images):
    model, fg = model_and_full
    x = preprocess(real_images.images[:2], model.cfg)
    g = prune(fg, ["ship", "airplane"])
    np.testing.assert_allclose(
        run(g, {"images": x})["logits"], torch_logits(model, x, [8, 0]), rtol=0, atol=1e-4
    )
