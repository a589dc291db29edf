"""The CLI's edges come from the registries (BACKENDS, PROVIDERS, precisions), not re-spelled lists;
the benchmark goals are judged by benchmarks/goals.py on the library's ratios."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import ROOT

from codedresnext.cli import build_parser
from codedresnext.runtime.backends import BACKENDS, DEFAULT_BACKEND
from codedresnext.runtime.backends.onnxrt.session import PROVIDERS


def _option(command: str, flag: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("command", ["bench", "predict", "calibrate"])
def test_backend_choices_are_the_registry(command):
    opt = _option(command, "--backend")
    assert list(opt.choices) == sorted(BACKENDS) and opt.default == DEFAULT_BACKEND


def test_provider_choices_are_the_registry():
    assert list(_option("bench", "--provider").choices) == sorted(PROVIDERS)


def test_unknown_backend_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["bench", "--backend", "tensorflow", "D"])
    assert e.value.code == 2 and "choose from" in capsys.readouterr().err


def _goals(monkeypatch):
    spec = importlib.util.spec_from_file_location("goals", ROOT / "benchmarks" / "goals.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "goals", mod)  # dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_goals_judge_the_ratios(monkeypatch):
    goals = _goals(monkeypatch)
    report = {
        "ratios": {
            "batch": 32,
            "class_speedup_over_flop_ratio": {"min": 0.92, "median": 0.94},
            "ort_over_torch_full": {"throughput_ratio": 1.9},
        }
    }
    rows = {r["what"]: r for r in goals.judge(report)}
    cls = rows["per-class speedup / FLOP ratio (median over classes)"]
    assert cls["value"] == pytest.approx(0.94) and cls["met"] is False and cls["goal"] == ">= 0.95"
    assert rows["ONNX Runtime / PyTorch eager throughput, full model"]["met"] is True
    assert goals.judge({"ratios": {"batch": 1}}) == []  # no figure, no verdict
    from codedresnext.runtime.bench.report import _ratio_lines

    lines = _ratio_lines(goals.add_goals(report))
    assert any("NOT met" in ln for ln in lines) and any(ln.endswith(": met)") for ln in lines)
