"""The typed artifact layer: GraphKind, strict manifest records, v1 manifests, shared primitives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codedresnext import artifact
from codedresnext.artifact import (
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_V1,
    GraphKind,
    Manifest,
    ManifestEntry,
    Preprocessing,
    check_precision,
    load_manifest,
    load_onnx,
    normalize_frames,
)
from codedresnext.errors import GraphError

KIND_STRINGS = ("full", "class", "subset", "multi-exit", "segment", "masked", "reject", "reject-probe")


def _entry(**kw) -> dict:
    return {"name": "class_cat", "file": "class_cat.onnx", "kind": "class", "classes": ["cat"], **kw}


def test_graph_kind_values_are_the_strings_on_disk():
    assert tuple(k.value for k in GraphKind) == KIND_STRINGS == artifact.KINDS
    assert GraphKind.MULTI_EXIT == "multi-exit" and f"{GraphKind.MULTI_EXIT}" == "multi-exit"
    assert json.dumps({"k": GraphKind.CLASS}) == '{"k": "class"}'  # metadata stays byte-identical
    with pytest.raises(GraphError, match="unknown graph kind 'detector'.*'class'"):
        GraphKind.parse("detector")


@pytest.mark.parametrize("good", ["fp32", "fp16", "int8", "int8-cpu", "int8-uint8act"])
def test_precisions_accepted(good):
    assert check_precision(good) == good
    assert ManifestEntry.from_dict(_entry(precision=good)).precision == good


@pytest.mark.parametrize("bad", ["fp64", "int8-", "INT8", "", 8])
def test_precisions_refused(bad):
    with pytest.raises(GraphError, match="precision"):
        ManifestEntry.from_dict(_entry(precision=bad))


def test_entry_is_strict():
    with pytest.raises(GraphError, match=r"unknown key\(s\) \['colour'\]"):
        ManifestEntry.from_dict(_entry(colour="red"))
    with pytest.raises(GraphError, match="missing required key 'file'"):
        ManifestEntry.from_dict({"name": "x", "kind": "full"})
    with pytest.raises(GraphError, match="unknown graph kind"):
        ManifestEntry.from_dict(_entry(kind="klass"))
    with pytest.raises(GraphError, match=r"graphs\[0\]\.segment: unknown key"):
        Manifest.from_dict({"graphs": [_entry(kind="segment", segment={"index": 0, "idx": 1})]})
    with pytest.raises(GraphError, match="finite"):
        ManifestEntry.from_dict(_entry(thresholds={"cat": float("inf")}))
    with pytest.raises(GraphError, match="more than once"):
        Manifest.from_dict({"graphs": [_entry(), _entry()]})
    with pytest.raises(GraphError, match="missing required key 'graphs'"):
        Manifest.from_dict({"format": MANIFEST_FORMAT})


def test_entry_json_keys_and_optional_slots():
    e = ManifestEntry.from_dict(_entry(bytes=12, reject_threshold=1.5))
    assert e.size_bytes == 12 and e.kind is GraphKind.CLASS
    d = e.to_dict()
    assert d["bytes"] == 12 and "size_bytes" not in d and d["kind"] == "class"
    assert "segment" not in d and "quantization" not in d  # None slots are left out
    e.quantization = {"method": "minmax", "calibration_images": 512}
    e.accuracy = {"top1": 0.9}
    assert ManifestEntry.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    probe = {
        "class": "cat",
        "blocks": [2, 3],
        "pair_flops": {"2": {"a": 10.0, "b": 5.0}},
        "reject_thresholds": {"2": 1.25, "3": 0.5},
    }
    p = ManifestEntry.from_dict(_entry(kind="reject-probe", reject_probe=probe))
    assert (
        p.kind is GraphKind.REJECT_PROBE
        and p.reject_probe.class_name == "cat"
        and p.to_dict()["reject_probe"] == probe
    )
    floor = {"trunk_blocks": [0], "trunk_flops": 100.0, "fraction_of_class_graph": 0.25}
    assert Manifest.from_dict({"graphs": [], "reject_floor": floor}).reject_floor.trunk_flops == 100.0
    choice = Manifest.from_dict({"graphs": [], "reject_choice": {"block": 3, "criterion": "least compute"}})
    assert choice.reject_choice.block == 3


def _strict_json(text: str):
    """json.loads that refuses Infinity/NaN, as JSON readers other than Python's do."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_never_thresholds_are_strict_json_null(tmp_path):
    """An exit kept shut (+inf) is null on disk and +inf again when read; absent means uncalibrated."""
    seg = {"name": "segment0", "file": "segment0.onnx", "kind": "segment", "segment": {"index": 0}}
    shut = ManifestEntry.from_dict({**seg, "exit_threshold": None})  # null on disk: never exit
    assert shut.exit_threshold == float("inf")
    assert "exit_threshold" in shut.to_dict() and shut.to_dict()["exit_threshold"] is None
    assert ManifestEntry.from_dict({**seg}).exit_threshold is None  # absent: not calibrated
    assert ManifestEntry.from_dict({**seg, "exit_threshold": 0.7}).to_dict()["exit_threshold"] == 0.7
    with pytest.raises(GraphError, match="exit_threshold is NaN"):
        ManifestEntry.from_dict({**seg, "exit_threshold": float("nan")})
    with pytest.raises(GraphError, match="exit_threshold: expected"):
        ManifestEntry.from_dict({**seg, "exit_threshold": "high"})
    m = Manifest.from_dict({"graphs": [seg]})
    m.graphs[0].exit_threshold = float("inf")
    m.graphs[0].exit_threshold_calibrated_on = "fp32 segments"
    m.calibration = artifact.json_ready({"thresholds": {"segment0": float("inf")}, "ratio": float("nan")})
    m.save(tmp_path)
    on_disk = _strict_json((tmp_path / "manifest.json").read_text())
    assert on_disk["graphs"][0]["exit_threshold"] is None
    assert on_disk["calibration"] == {"thresholds": {"segment0": None}, "ratio": None}
    assert load_manifest(tmp_path).graphs[0].exit_threshold == float("inf")
    m.calibration = {"thresholds": {"segment0": float("inf")}}  # not made JSON-ready: refused
    with pytest.raises(GraphError, match="non-finite number"):
        m.save(tmp_path)
    assert _strict_json((tmp_path / "manifest.json").read_text())["calibration"]["ratio"] is None


def test_json_ready_keeps_finite_values():
    v = {"a": [1, 2.5, float("-inf")], "b": (True, None, "x"), "c": {"d": float("nan")}}
    assert artifact.json_ready(v) == {"a": [1, 2.5, None], "b": [True, None, "x"], "c": {"d": None}}


def test_real_export_manifest_round_trips(tmp_path):
    pytest.importorskip("torch")
    from codedresnext.export import ExportOptions, export_graphs

    m = export_graphs(
        ExportOptions(
            out=tmp_path / "e",
            preset="tiny",
            classes=["cat"],
            segments=True,
            reject_block=2,
            verify=False,
            progress=False,
        )
    )
    on_disk = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert on_disk["format"] == MANIFEST_FORMAT
    loaded = load_manifest(tmp_path / "e")
    assert loaded.to_dict() == on_disk == json.loads(json.dumps(m.to_dict()))
    assert loaded.graph("segment0").segment.next == "segment1"
    assert loaded.reject[0].class_name == "cat" and loaded.reject[0].a == "reject_cat_a"
    assert [g.name for g in loaded.of_kind(GraphKind.REJECT)] == ["reject_cat_a", "reject_cat_b"]
    assert loaded.class_graph("cat").name == "class_cat" and loaded.class_graph("dog") is None
    with pytest.raises(GraphError, match="available"):
        loaded.graph("class_dog")


def test_v1_manifest_loads_converted(tmp_path):
    v1 = {
        "format": MANIFEST_FORMAT_V1,
        "untrained": True,
        "segments": None,
        "reject": None,
        "graphs": [
            _entry(),
            {"name": "segment0", "file": "segment0.onnx", "kind": "segment", "index": 0},
            {"name": "segment1", "file": "segment1.onnx", "kind": "segment", "index": 1},
        ],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(v1))
    m = load_manifest(tmp_path)
    assert m.format == MANIFEST_FORMAT and m.graph("segment1").segment.index == 1
    m.save(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["format"] == MANIFEST_FORMAT
    v1["graphs"][0]["extra"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(v1))
    with pytest.raises(GraphError, match="unknown key.*'extra'.*v1 manifest: re-export"):
        load_manifest(tmp_path)


def test_foreign_and_broken_manifests(tmp_path):
    with pytest.raises(GraphError, match="run `codedresnext export`"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "someone-else", "graphs": []}))
    with pytest.raises(GraphError, match="not a codedresnext manifest"):
        load_manifest(tmp_path)


def test_onnx_loading_errors(tmp_path):
    with pytest.raises(GraphError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff")
    with pytest.raises(GraphError, match="not a readable ONNX file"):
        load_onnx(bad)
    with pytest.raises(GraphError, match="not a readable ONNX file"):
        artifact.read_metadata(bad)


def test_ort_session_errors(tmp_path):
    from codedresnext.runtime import open_backend
    from codedresnext.runtime.backends.onnxrt.session import create_session

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff")
    with pytest.raises(GraphError, match="ONNX Runtime cannot load"):
        create_session(bad)
    with pytest.raises(GraphError, match="not a readable ONNX file|cannot load"):
        open_backend("ort", bad)
    with pytest.raises(GraphError, match="does not exist"):
        create_session(tmp_path / "missing.onnx")


def test_one_preprocessing_equals_the_training_pipeline(real_images):
    """normalize_frames is bit-identical to model.to_input, the PyTorch model's input."""
    torch = pytest.importorskip("torch")
    from codedresnext.model import to_input
    from codedresnext.model_config import CIFAR10_MEAN, CIFAR10_STD

    frames = real_images.images[:32]
    ours = normalize_frames(frames, CIFAR10_MEAN, CIFAR10_STD)
    ref = to_input(torch.from_numpy(np.ascontiguousarray(frames)), CIFAR10_MEAN, CIFAR10_STD).numpy()
    assert ours.dtype == np.float32 and ours.shape == (32, 3, 32, 32) and ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, ref)
    pre = Preprocessing(mean=CIFAR10_MEAN, std=CIFAR10_STD, size=32)
    np.testing.assert_array_equal(pre.normalize(frames), ours)
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_one_f1_threshold_and_its_tie_rule():
    """Both users (evaluate, calibrate) use the same function; ties are never split."""
    from codedresnext.evaluate import metrics
    from codedresnext.runtime.thresholds import calibrate
    from codedresnext.runtime.thresholds.detector import f1_optimal_threshold

    assert metrics.f1_optimal_threshold is f1_optimal_threshold is calibrate.f1_optimal_threshold
    # scores 3, 2, 2, 1 with labels 1, 1, 0, 0: cutting between the two 2s would give F1 1.0, but
    # no threshold realises it with `>`; the best realisable cut is above 2 (F1 2/3) or below (F1 0.8)
    thr, f1 = f1_optimal_threshold(np.array([3.0, 2.0, 2.0, 1.0]), np.array([1, 1, 0, 0]))
    assert f1 == pytest.approx(0.8) and thr == pytest.approx(1.5)
    pred = np.array([3.0, 2.0, 2.0, 1.0]) > thr
    assert pred.tolist() == [True, True, True, False]
    # equal F1 at two cuts: the higher threshold (fewer positives) wins
    thr, f1 = f1_optimal_threshold(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 1, 0]))
    assert f1 == pytest.approx(0.8) and thr == pytest.approx(1.5)
    assert f1_optimal_threshold(np.array([4.0, 3.0]), np.array([1, 0]))[0] == pytest.approx(3.5)


def _kind_literals(source: str) -> list[tuple[int, str]]:
    """Kind values used as kinds: compared (`kind == "segment"`, `kind in ("class", "subset")`) or
    passed as `kind=`. Other strings that happen to read "class" (a table header, a JSON field
    name, a file stem) are not kinds."""
    import ast

    def consts(node):
        if isinstance(node, ast.Constant):
            yield node
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for e in node.elts:
                yield from consts(e)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found += [c for side in (node.left, *node.comparators) for c in consts(side)]
        elif isinstance(node, ast.keyword) and node.arg == "kind":
            found += list(consts(node.value))
    return sorted((c.lineno, c.value) for c in found if c.value in KIND_STRINGS)


def test_kind_strings_are_spelled_in_artifact_only():
    """Graph kinds are GraphKind members everywhere but artifact/keys.py (no '"segment"' literals)."""
    from conftest import ROOT

    offenders = []
    for path in (ROOT / "codedresnext").rglob("*.py"):
        if path.parts[-2] == "artifact":
            continue
        offenders += [f"{path.relative_to(ROOT)}:{i}: {v!r}" for i, v in _kind_literals(path.read_text())]
    assert not offenders, "\n".join(offenders)
    probe = 'a = k == "segment"\nb = k in ("class", "x")\nf(kind="full")\nd = {"class": 1}\nh = ["class"]\n'
    assert _kind_literals(probe) == [(1, "segment"), (2, "class"), (3, "full")]
