"""Export verification cannot miss an output: every output a graph declares is compared with the
PyTorch reference, and an output the reference does not compute fails the export by name."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from codedresnext.artifact import OUTPUT_EXIT_SCORES, OUTPUT_LOGITS  # noqa: E402
from codedresnext.export import ExportOptions, export_graphs  # noqa: E402
from codedresnext.export import reference as reference_mod  # noqa: E402
from codedresnext.export.verify import UnverifiedOutputError, check_coverage, compare  # noqa: E402

KW = {"preset": "tiny", "segments": True, "verify_images": 0, "verify_batch": 2, "progress": False}


def _patch_reference(monkeypatch, edit):
    real = reference_mod.Reference.__call__

    def patched(self, spec):
        feed, expected = real(self, spec)
        return feed, edit(spec, dict(expected))

    monkeypatch.setattr(reference_mod.Reference, "__call__", patched)


def test_an_output_the_reference_does_not_compute_fails_the_export(tmp_path, monkeypatch):
    """As if the builder had gained an output that export/reference.py was never taught."""

    def drop_exit_scores(spec, expected):
        expected.pop(OUTPUT_EXIT_SCORES, None)
        return expected

    _patch_reference(monkeypatch, drop_exit_scores)
    out = tmp_path / "e"
    with pytest.raises(UnverifiedOutputError, match=r"'segment0' declares output\(s\) \['exit_scores'\]"):
        export_graphs(ExportOptions(out=out, **KW))
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no temp dir left


def test_an_output_the_graph_lacks_fails_the_export(tmp_path, monkeypatch):
    def add_output(spec, expected):
        expected["extra_scores"] = np.zeros((2, 3), np.float32)
        return expected

    _patch_reference(monkeypatch, add_output)
    with pytest.raises(UnverifiedOutputError, match=r"'full' lacks output\(s\) \['extra_scores'\]"):
        export_graphs(ExportOptions(out=tmp_path / "e", **KW))


def test_every_declared_output_is_in_the_manifest_verification(tmp_path):
    m = export_graphs(ExportOptions(out=tmp_path / "e", multi_exit=True, **KW))
    for g in m.graphs:
        assert set(g.verification.random.outputs) == set(g.output_names), g.name
        assert g.verification.images.skipped == "none: 0 real images asked for"
    me = m.graph("multi_exit")
    assert len(me.output_names) == 1 + 2 * len(me.exits) and OUTPUT_LOGITS in me.output_names


def test_coverage_and_compare_units():
    ref = {"logits": np.ones((2, 3), np.float32)}
    check_coverage("g", ["logits"], ref)
    with pytest.raises(UnverifiedOutputError, match="declares"):
        check_coverage("g", ["logits", "x"], ref)
    res = compare({"logits": np.ones((2, 3), np.float32) + 1e-3}, ref, 1e-4)
    assert not res.passed and res.outputs["logits"].max_abs == pytest.approx(1e-3, rel=1e-3)
    assert compare({"logits": np.ones((3, 3), np.float32)}, ref, 1.0).outputs["logits"].shape == [3, 3]
