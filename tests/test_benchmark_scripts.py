"""The benchmark scripts run end to end at tiny sizes (they are the issue's measurement
commands, so they must not rot between the runs that produce benchmarks/results/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo" / "model.pt"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_bench_int8_times_every_precision_and_records_accuracy(tmp_path, small_tree):
    r = _script(
        "bench_int8.py", "--preset", "tiny", "--data", str(small_tree), "--batch", "4", "--warmup", "0.01",
        "--duration", "0.05", "--rounds", "1", "--threads", "1", "--calibration-images", "16",
        "--eval-images", "10", "--repeats", "3", "--out", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "int8.json").read_text())
    classes = sorted(run["class"] for run in rep["repeats"])  # three whole runs, the median one written
    assert len(classes) == 3 and rep["ratios"]["int8"]["class"]["ratio_vs_fp32_full"] == classes[1]
    assert {(g["name"], g["precision"]) for g in rep["graphs"]} >= {
        ("full", "fp32"), ("full_int8", "int8"), ("full_int8_cpu", "int8-cpu"), ("class_cat_fp16", "fp16")
    }  # fmt: skip
    acc = rep["int8_accuracy_vs_fp32"]
    assert set(acc) == {"full_int8", "full_int8_cpu", "class_cat_int8", "class_cat_int8_cpu"}
    assert all(0.0 <= a["top1_agreement"] <= 1.0 for k, a in acc.items() if k.startswith("full"))
    isa = rep["env"]["cpu_isa"]  # the goals judged are this machine's ISA class's, named in each line
    md = (tmp_path / "int8.md").read_text().splitlines()
    goal_lines = [ln for ln in md if ln.startswith("- goal: fastest INT8")]
    if isa != "other":
        assert len(goal_lines) == 2 and all(f"on {isa}" in ln for ln in goal_lines)


def test_int8_calibration_compares_methods_on_the_demo_model(tmp_path, small_tree):
    if not DEMO.is_file():
        pytest.skip(f"demo model {DEMO} missing")
    r = _script(
        "int8_calibration.py", "--data", str(small_tree), "--calibration-images", "16",
        "--test-images", "40", "--methods", "minmax,percentile:99.99", "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "int8_calibration.json").read_text())
    assert [x["method"] for x in res["runs"]] == ["minmax", "percentile 99.99"]
    assert res["chosen"] in ("minmax", "percentile 99.99") and res["test_images"] == 40
    for run in res["runs"]:
        assert set(run["precisions"]) == {"int8", "int8-cpu"}
        for a in run["precisions"].values():
            assert 0.0 <= a["top1"] <= 1.0 and 0.0 <= a["reference"]["top1"] <= 1.0
    assert "| minmax | int8 |" in (tmp_path / "int8_calibration.md").read_text()


def test_exit_guard_scores_every_guard_on_each_halving(tmp_path, small_tree):
    if not DEMO.is_file():
        pytest.skip(f"demo model {DEMO} missing")
    r = _script(
        "exit_guard.py", "--data", str(small_tree), "--splits", "2", "--confidences", "margin",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "exit_guard.json").read_text())
    assert res["images"] == 100 and res["exits"] == 5 and res["splits"] == 2
    assert 0.0 <= res["oracle_compute_saved"] < 1.0
    exact = next(x for x in res["rows"] if x["guard"] == "none")
    assert [x["guard"] for x in res["rows"]] == [
        "cv (10 folds, default)", "cv (3 folds)", "cv (5 folds)", "se", "none", "greedy at cv's budget"
    ]  # fmt: skip
    for row in res["rows"]:
        assert len(row["per_split"]) == 2 and 0 <= row["over_budget"] <= 2
        for cal_loss, ev_loss, saved in row["per_split"]:
            assert -100 <= cal_loss <= 100 and -100 <= ev_loss <= 100 and 0.0 <= saved < 1.0
    assert all(cal <= res["budget"] + 1e-9 for cal, _, _ in exact["per_split"])  # fitted to the budget
    assert "| margin | cv (10 folds, default) |" in (tmp_path / "exit_guard.md").read_text()


def test_exit_guard_oracle_leaves_at_the_first_exit_agreeing_with_the_final_classifier(monkeypatch):
    import importlib.util

    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script: demo_common
    spec = importlib.util.spec_from_file_location("exit_guard", ROOT / "benchmarks" / "exit_guard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    eye = np.eye(3)
    logits = eye[[0, 1, 2]]  # final predictions 0, 1, 2
    exits = [eye[[0, 2, 0]], eye[[0, 1, 1]]]  # sample 0 agrees at exit 0, sample 1 at exit 1, sample 2 never
    # segments of 2, 3 and 5 FLOPs; exits after segments 0 and 1: a sample ends at 2, 5 or 10
    saved = mod._oracle(exits, logits, [2.0, 3.0, 5.0], [0, 1])
    assert saved == pytest.approx(1.0 - (2 + 5 + 10) / 3 / 10)


def test_reject_rule_compares_scores_and_threshold_rules_on_each_halving(tmp_path, small_tree):
    if not DEMO.is_file():
        pytest.skip(f"demo model {DEMO} missing")
    r = _script(
        "reject_rule.py", "--data", str(small_tree), "--splits", "2", "--fit-images", "150", "--budget", "20",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "reject_rule.json").read_text())
    assert res["images"] == 100 and res["classes"] == 10 and res["fit_images"] == 150 and res["splits"] == 2
    combos = {(x["score"], x["threshold"]) for x in res["rows"]}
    assert combos == {
        (s, t)
        for s in ("learned", "distance")
        for t in ("calibrate (expected loss)", "in-sample exact (before)")
    }
    for row in res["rows"]:
        assert len(row["per_split"]) == 2 and 0 <= row["over_budget"] <= 2
        assert all(0.0 <= stop <= 1.0 and -100 <= loss <= 100 for stop, loss in row["per_split"])
    by = {(x["block"], x["score"], x["threshold"]): x for x in res["rows"]}
    for (j, s, t), row in by.items():  # the expected-loss rule never rejects more than the in-sample fit
        if t.startswith("calibrate"):
            assert (
                row["negatives_stopped"]
                <= by[(j, s, "in-sample exact (before)")]["negatives_stopped"] + 1e-12
            )
    assert "| learned | calibrate (expected loss) |" in (tmp_path / "reject_rule.md").read_text()


def test_class_efficiency_pairs_full_and_class_calls_in_every_core_layout(tmp_path):
    (tmp_path / "class_efficiency.md").write_text("# old results\n\n## History\n\n- tried X: slower\n")
    r = _script(
        "class_efficiency.py", "--preset", "tiny", "--batch", "2", "--rounds", "2", "--calls", "2",
        "--cores", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "class_efficiency.json").read_text())
    assert res["class_graph"] == "class_cat" and res["flop_ratio"] > 1.0
    layouts = [(m["mode"], m["threads_per_session"], m["streams"], m["spinning"]) for m in res["modes"]]
    assert layouts == [
        ("1 thread", 1, 1, "off"),
        ("2 threads", 2, 1, "off"),
        ("2 threads, spinning", 2, 1, "run"),
        ("2 threads, spinning kept", 2, 1, "kept"),
        ("2 streams x 1 thread", 1, 2, "off"),
    ]
    for m in res["modes"]:
        assert m["pairs"] == 4  # rounds x calls
        assert m["efficiency_p25"] <= m["efficiency_median"] <= m["efficiency_p75"]
        assert m["full_sps"] > 0 and m["class_sps"] > 0
    md = (tmp_path / "class_efficiency.md").read_text()
    assert "| 2 streams x 1 thread |" in md and "Goal: >= 0.95" in md
    assert "# old results" not in md and md.endswith("\n## History\n\n- tried X: slower\n")  # kept


def test_results_pages_keep_their_history_section(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from history import with_history

    page = tmp_path / "x.md"
    assert with_history(page, "# new\n") == "# new\n"  # no page yet
    page.write_text("# old\n\nrows\n")
    assert with_history(page, "# new\n") == "# new\n"  # a page without History
    page.write_text("# old\n\n## History\n\n- a\n\n## History of B\n")
    assert with_history(page, "# new\n\n") == "# new\n\n## History\n\n- a\n\n## History of B\n"


def test_edge_latency_profiles_and_times_batch_1(tmp_path):
    """benchmarks/edge_latency.py at a few calls: the per-node overhead share from ORT's profile and
    batch-1 latency per thread count and optimisation level, written as JSON + Markdown."""
    r = _script("edge_latency.py", "--calls", "5", "--images", "8", "--out", str(tmp_path / "edge"))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((tmp_path / "edge.json").read_text())
    assert set(d["profile"]) == {"full", "class_cat"}
    assert all(0 < p["overhead_share_median"] < 1 and p["nodes"] > 0 for p in d["profile"].values())
    cells = {(c["graph"], c["threads"], c["optimization"]) for c in d["latency"]}
    assert {("class_cat", 1, "all"), ("class_cat", 2, "all"), ("full", 1, "all")} <= cells
    assert all(0 < c["median_ms"] <= c["p99_ms"] for c in d["latency"])
    assert "| graph |" in (tmp_path / "edge.md").read_text()


def test_serve_benchmark_compares_the_server_with_in_process(tmp_path):
    """benchmarks/serve.py at 3 requests per cell: every model x batch x clients cell measured
    in-process, over HTTP and over gRPC through a real Triton server."""
    from codedresnext.deploy.serve import ServerError, find_server

    try:
        find_server().close()
    except ServerError as e:
        pytest.skip(str(e))
    r = _script("serve.py", "--requests", "3", "--warmup", "1", "--out", str(tmp_path / "serve"))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((tmp_path / "serve.json").read_text())
    cells = {(c["model"], c["batch"], c["clients"], c["where"]) for c in d["cells"]}
    want = {
        (m, b, n, w)
        for m in ("class_cat_py", "cascade_py")
        for b in (1, 8)
        for n in (1, 8)
        for w in ("in-process", "http", "grpc")
    }
    assert cells == want
    assert all(c["requests"] > 0 and 0 < c["p50_ms"] <= c["p99_ms"] for c in d["cells"])
