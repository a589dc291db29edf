"""Every registered preset (torchvision-style: the tests run over the registry, so a new preset is
tested the moment it is registered): builds, pinned parameter count, config round trip, forward
shapes, its control twin, and its training defaults."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from codedresnext.errors import CodedResNeXtError
from codedresnext.model import count_parameters, create_model
from codedresnext.model_config import PRESETS, ModelConfig, Preset, StageConfig, build_config

# pinned: a change here changes every checkpoint and export of that preset (tiny and small back
# the shipped demo model and the demo training run: they must never move)
PARAMETERS = {
    "cifar10": 4_638_926,  # paper Table 1
    "cifar100": 4_749_136,
    "imagenet": 25_027_904,  # paper: 25.0M
    "tiny": 293_216,
    "small": 426_144,
}


def test_every_preset_is_pinned():
    assert set(PRESETS) == set(PARAMETERS)


@pytest.fixture(scope="module", params=sorted(PRESETS))
def built(request):
    torch.manual_seed(0)
    return request.param, create_model(request.param).eval()


def test_parameter_count_is_pinned_and_documented(built):
    name, model = built
    assert count_parameters(model) == PARAMETERS[name]
    assert f"{PARAMETERS[name]:,} parameters" in PRESETS[name].doc
    assert count_parameters(create_model(name, control=True)) == PARAMETERS[name]  # same shapes, r = 1


def test_config_round_trips(built):
    name, model = built
    cfg = model.cfg
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.name == name
    p = PRESETS[name]
    assert cfg.num_classes == len(p.class_names) and cfg.input_size == p.input_size and cfg.stem == p.stem
    # the preset's stages, with the codewords filled in for the coded ones
    assert [dataclasses.replace(s, codewords=None) for s in cfg.stages] == list(p.stages)
    assert all((s.codewords is not None) == s.coded for s in cfg.stages)


def test_forward_shapes(built):
    name, model = built
    cfg = model.cfg
    x = torch.randn(2, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (2, cfg.num_classes)
    coded = [s for s in cfg.stages if s.coded for _ in range(s.depth)]
    assert len(out.energies) == len(coded) == len(cfg.coded_blocks)
    for e, s in zip(out.energies, coded):
        assert e.shape == (2, s.branches)
        assert torch.allclose(e.sum(1), torch.full((2,), float(s.branches)), atol=1e-3)


def test_training_defaults(built):
    name, _ = built
    p = PRESETS[name]
    assert p.train_crop == ("resized" if p.stem == "imagenet" else "pad")
    # docs/method.md section 4; the CPU presets train with crop + flip only
    want = {"cifar10": (3, 4), "cifar100": (1, 2), "imagenet": (2, 10), "tiny": None, "small": None}
    assert p.randaugment == want[name]


def test_presets_are_keyword_only_and_typed():
    p = PRESETS["tiny"]
    with pytest.raises(TypeError):
        Preset("x", "doc", p.stages, "cifar10", p.class_names)
    assert all(isinstance(s, StageConfig) and s.codewords is None for s in p.stages)
    with pytest.raises(CodedResNeXtError, match="train_crop"):
        dataclasses.replace(p, train_crop="center")


def test_own_class_count_gets_generated_codes():
    cfg = build_config("tiny", class_names=[f"c{i}" for i in range(7)])
    assert cfg.num_classes == 7 and all(len(s.codewords) == 7 for s in cfg.stages if s.coded)
