"""The committed demo model loads (weights_only) and reproduces its recorded test accuracy."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

DEMO = ROOT / "models" / "demo"


def _recorded() -> dict:
    lines = (DEMO / "metrics.jsonl").read_text().splitlines()
    return max((json.loads(line) for line in lines if line.strip()), key=lambda m: m["test_accuracy"])


def test_demo_checkpoint_is_small_and_self_describing():
    from codedresnext.checkpoint import load_checkpoint
    from codedresnext.model import count_parameters

    assert (DEMO / "model.pt").stat().st_size < 5 * 1024 * 1024
    model, state = load_checkpoint(DEMO / "model.pt")  # torch.load(weights_only=True) inside
    assert model.cfg.name == "small" and model.cfg.num_classes == 10
    assert count_parameters(model) == 426_144
    assert state["step"] == _recorded()["step"]


def test_demo_model_reproduces_recorded_test_accuracy(cifar10_test):
    from codedresnext.checkpoint import load_checkpoint
    from codedresnext.train.evaluation import classifier_metrics

    model, _ = load_checkpoint(DEMO / "model.pt")
    rec = _recorded()
    got = classifier_metrics(model, cifar10_test, batch_size=500)
    assert len(cifar10_test) == 10_000
    # float summation order can flip at most a couple of borderline images
    assert got["accuracy"] == pytest.approx(rec["test_accuracy"], abs=2e-4)
    assert got["early_decoder_accuracy"] == pytest.approx(rec["early_decoder_accuracy"], abs=2e-4)
