"""docs/results.md is generated from benchmarks/results/*.json (benchmarks/results_table.py): a row
per result, each naming its machine, and the committed page is what the JSONs give."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "benchmarks" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["results_table"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_a_row_for_every_result_with_its_machine(table):
    rows = table.rows()
    assert [r.stem for r in rows] == sorted(p.stem for p in RESULTS.glob("*.json"))
    for r in rows:
        assert r.figures and "no summary rule" not in r.figures, r.stem  # every committed file is summarised
        for cell in (r.date, r.cpu, r.isa, r.threads, r.command):
            assert cell, r.stem  # a value, or said to be "not recorded"
        assert r.isa in {
            "AVX-512+VNNI",
            "AVX-512",
            "AVX2+VNNI",
            "AVX2",
            "Arm+dotprod",
            "other",
            table.NOT_RECORDED,
        }
        assert (RESULTS / r.page).is_file()


def test_the_page_has_the_columns_and_is_deterministic(table):
    text = table.render(table.rows())
    header = next(ln for ln in text.splitlines() if ln.startswith("| result |"))
    for col in ("headline figures", "date", "CPU", "ISA", "threads", "command"):
        assert f"| {col} |" in header
    assert text == table.render(table.rows())
    assert "/work/" not in text  # no path of the machine that produced it


def test_docs_results_md_is_up_to_date(table):
    assert (ROOT / "docs" / "results.md").read_text() == table.render(table.rows()), (
        "docs/results.md is out of date: run python benchmarks/results_table.py"
    )
    assert table.main(["--check"]) == 0


def test_recorded_isa_is_used_and_a_missing_one_is_not_guessed(table, tmp_path):
    env = {"timestamp_utc": "2030-01-02T03:04:05Z", "cpu": "Some CPU", "threads": 4, "backend": "ort"}
    graphs = [{"name": "full", "kind": "full", "results": []}]
    ratios = {"batch": 32, "class_speedup_over_flop_ratio": {"min": 0.9, "median": 0.97}}
    new = {"graphs": graphs, "env": {**env, "cpu_isa": "AVX2+VNNI"}, "ratios": ratios, "command": "cmd new"}
    old = {"graphs": graphs, "env": env, "ratios": ratios, "command": "cmd old"}
    (tmp_path / "new_run.json").write_text(json.dumps(new))
    (tmp_path / "old_run.json").write_text(json.dumps(old))
    (tmp_path / "odd.json").write_text(json.dumps({"something": 1}))
    by = {r.stem: r for r in table.rows(tmp_path)}
    assert (by["new_run"].isa, by["new_run"].cpu, by["new_run"].threads) == ("AVX2+VNNI", "Some CPU", "4")
    assert by["new_run"].date == "2030-01-02" and "0.970" in by["new_run"].figures
    assert by["old_run"].isa == table.NOT_RECORDED and by["old_run"].notes == ()
    assert by["odd"].cpu == by["odd"].date == by["odd"].command == table.NOT_RECORDED
    assert "no summary rule" in by["odd"].figures  # an unknown kind of result still gets its row
    text = table.render(table.rows(tmp_path))
    assert text.count("\n| [") == 3 and "`cmd new`" in text and "Sources of machine facts" not in text
