"""Property-based: for random small configs (N, N_act, widths, depths, codewords), every class's
pruned graph and a random subset's graph equal the masked PyTorch reference."""

from __future__ import annotations

import numpy as np
from export_helpers import randomize_bn, run, torch_logits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedresnext.model_config import ModelConfig, StageConfig


@st.composite
def configs(draw):
    k = draw(st.integers(2, 4))
    stages = []
    for si in range(draw(st.integers(1, 3))):
        n = draw(st.integers(2, 5))
        coded = draw(st.booleans()) or si == 0
        active = draw(st.integers(1, n - 1)) if coded else n
        words = None
        if coded:
            words = []
            for _ in range(k):
                ones = draw(st.permutations(list(range(n))))[:active]
                words.append("".join("1" if i in ones else "0" for i in range(n)))
            words = tuple(words)
        stages.append(
            StageConfig(
                out_channels=draw(st.sampled_from([4, 8, 12])),
                width=draw(st.integers(1, 3)),
                branches=n,
                active=active,
                depth=draw(st.integers(1, 2)),
                stride=draw(st.sampled_from([1, 2])),
                codewords=words,
            )
        )
    return ModelConfig(
        name="random",
        num_classes=k,
        class_names=tuple(f"c{i}" for i in range(k)),
        stages=tuple(stages),
        stem_channels=draw(st.sampled_from([4, 8])),
        input_size=8,
    )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), seed=st.integers(0, 1000))
def test_pruned_equals_masked_reference_on_random_configs(cfg, seed):
    import torch

    from codedresnext.export import kinds
    from codedresnext.export.builder import build_graph
    from codedresnext.export.counting import count_params
    from codedresnext.export.fold import fold_weights
    from codedresnext.export.layout import analytic_params, block_layout, keep_branches
    from codedresnext.export.meta import graph_metadata
    from codedresnext.export.pruner import load_full_graph, prune
    from codedresnext.model import CodedResNeXt

    torch.manual_seed(seed)
    model = randomize_bn(CodedResNeXt(cfg), seed)
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="", untrained=True, opset=17)
    full = build_graph(cfg, fold_weights(model), spec, metadata=meta)
    fg = load_full_graph(full)
    x = np.random.default_rng(seed).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(full, {"images": x})["logits"], torch_logits(model, x), rtol=0, atol=1e-4)
    layout = block_layout(cfg)
    for k in range(cfg.num_classes):
        g = prune(fg, [k])
        np.testing.assert_allclose(
            run(g, {"images": x})["logits"], torch_logits(model, x, [k]), rtol=0, atol=1e-4
        )
        assert count_params(g) == analytic_params(cfg, keep_branches(layout, [k]), 1)
    sub = [cfg.num_classes - 1, 0]
    g = prune(fg, sub)
    np.testing.assert_allclose(
        run(g, {"images": x})["logits"], torch_logits(model, x, sub), rtol=0, atol=1e-4
    )
