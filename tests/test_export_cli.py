"""`codedresnext export` / `prune` end to end: manifest, verification, atomicity, bad inputs, no torch."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import make_model, preprocess, run, torch_logits

from codedresnext.artifact import GraphKind, TensorInfo
from codedresnext.cli import main
from codedresnext.errors import CodedResNeXtError
from codedresnext.export import ExportOptions, export_graphs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny checkpoint with random weights and non-trivial BN statistics."""
    from codedresnext.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, make_model("tiny", seed=3))
    return path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory, cifar10_tgz):
    out = tmp_path_factory.mktemp("exp") / "graphs"
    rc = main(
        [
            "export",
            str(ckpt),
            "--out",
            str(out),
            "--classes",
            "all",
            "--subset",
            "cat,dog",
            "--multi-exit",
            "--segments",
            "--reject-block",
            "1",
            "--quiet",
            "--images",
            str(cifar10_tgz),
        ]
    )
    assert rc == 0
    return out


def test_manifest_describes_verified_graphs(exported, ckpt, cifar10_tgz):
    from codedresnext.artifact import load_manifest

    m = load_manifest(exported)
    names = m.names
    assert names[:11] == ["full"] + [f"class_{c}" for c in m.model.class_names]
    assert {"subset_cat__dog", "multi_exit", "segment0", "segment1", "reject_cat_a", "reject_cat_b"} <= set(
        names
    )
    assert m.checkpoint.sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert m.untrained is False and m.opset == 17
    assert m.segments.order == ["segment0", "segment1", "segment2"]  # default cuts: blocks 2, 3
    assert str(cifar10_tgz) in m.verification.images
    for g in m.graphs:
        data = (exported / g.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == g.sha256
        v = g.verification
        assert v.passed and v.random.max_abs <= 1e-4 and v.images.max_abs <= 1e-4
        assert v.random.max_abs > 0 or g.kind == GraphKind.SEGMENT  # really compared numbers
        assert g.params > 0 and g.flops > 0 and g.inputs[0].shape[0] == "batch"
        if g.kind == GraphKind.CLASS:
            assert g.params == g.analytic_params == 133408
            assert g.outputs == [TensorInfo("logits", "float32", ["batch", 1])]
    assert (exported / "source.pt").is_file()


def test_exported_graphs_run_on_real_images(exported, ckpt, real_images):
    from codedresnext.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    model.eval()
    x = preprocess(real_images.images[:8], model.cfg)
    import onnx

    got = run(onnx.load(str(exported / "class_horse.onnx")), {"images": x})["logits"]
    np.testing.assert_allclose(got, torch_logits(model, x, [7]), rtol=0, atol=1e-4)
    sub = run(onnx.load(str(exported / "subset_cat__dog.onnx")), {"images": x})["logits"]
    np.testing.assert_allclose(sub, torch_logits(model, x, [3, 5]), rtol=0, atol=1e-4)


def test_export_is_deterministic(exported, ckpt, tmp_path):
    out = tmp_path / "again"
    assert main(["export", str(ckpt), "--out", str(out), "--classes", "cat,ship", "--quiet"]) == 0
    for name in ("full.onnx", "class_cat.onnx", "class_ship.onnx"):
        assert (out / name).read_bytes() == (exported / name).read_bytes()


def _no_torch_run(args: list[str]) -> subprocess.CompletedProcess:
    prelude = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('torch importable')\n"
        "from codedresnext.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m])\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_prune_works_without_torch(exported, tmp_path):
    out = tmp_path / "cat.onnx"
    r = _no_torch_run(["prune", str(exported / "full.onnx"), "--class", "cat", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (exported / "class_cat.onnx").read_bytes()  # same graph as the export's
    out2 = tmp_path / "sub.onnx"
    r = _no_torch_run(["prune", str(exported / "full.onnx"), "--subset", "cat,dog", "--out", str(out2)])
    assert r.returncode == 0, r.stderr
    assert out2.read_bytes() == (exported / "subset_cat__dog.onnx").read_bytes()
    r = _no_torch_run(["prune", str(exported / "full.onnx"), "--class", "kitten", "--out", str(out2)])
    assert r.returncode == 2 and "airplane, automobile, bird, cat" in r.stderr


def test_prune_bad_inputs(exported, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    full = str(exported / "full.onnx")
    assert main(["prune", full, "--class", "kitten", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "valid class names: airplane" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(g), str(plain))
    assert main(["prune", str(plain), "--class", "cat", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no codedresnext metadata" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    assert main(["prune", str(corrupt), "--class", "cat", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err
    assert (
        main(["prune", str(exported / "class_cat.onnx"), "--class", "cat", "--out", str(tmp_path / "x.onnx")])
        == 2
    )
    assert "needs the full graph" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["prune", full, "--class", "cat", "--out", str(blocker / "cat.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_export_bad_inputs(ckpt, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["export", str(ckpt), "--out", str(out), "--classes", "cat,kitten", "--quiet"]) == 2
    assert "unknown class 'kitten'" in capsys.readouterr().err and not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(ckpt), "--out", str(blocker / "o"), "--quiet"]) == 2
    assert "choose a writable --out" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "--out", str(out), "--quiet"]) == 2
    assert "looks like a text file. Expected a .pt file" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--out", str(out), "--quiet"]) == 2


def test_failed_verification_leaves_no_directory(ckpt, tmp_path, monkeypatch):
    """A graph that disagrees with PyTorch aborts the export and nothing is left behind."""
    from codedresnext.errors import CodedResNeXtError
    from codedresnext.export import exporter, fold

    real_fold = fold.fold_weights

    def broken(model):
        w = real_fold(model)
        w["block3/expand.weight"] = w["block3/expand.weight"] * 1.01  # a wrong BN fold
        return w

    monkeypatch.setattr(exporter, "fold_weights", broken)  # the name the exporter calls
    out = tmp_path / "graphs"
    with pytest.raises(CodedResNeXtError, match="verification against PyTorch failed"):
        exporter.export_graphs(
            exporter.ExportOptions(out=out, checkpoint=ckpt, classes=["cat"], progress=False)
        )
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temp directory either


def test_preset_export_is_marked_untrained(tmp_path, capsys):
    from codedresnext.artifact import load_manifest, read_metadata
    from codedresnext.checkpoint import load_checkpoint

    out = tmp_path / "p"
    assert main(["export", "--preset", "tiny", "--out", str(out), "--uint8-input", "--quiet"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("note: --preset tiny exports RANDOM weights (untrained")  # before any work
    m = load_manifest(out)
    assert m.untrained is True and m.preprocessing.dtype == "uint8"
    assert m.graphs[0].inputs[0] == TensorInfo("frames", "uint8", ["batch", 32, 32, 3])
    meta = read_metadata(out / "full.onnx")
    assert meta["codedresnext.untrained"] is True
    assert json.loads(json.dumps(meta["codedresnext.model_config"]))["name"] == "tiny"
    model, _ = load_checkpoint(out / m.checkpoint.source)  # the runtime's PyTorch peer
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    import onnx

    got = run(onnx.load(str(out / "full.onnx")), {"frames": frames})["logits"]
    np.testing.assert_allclose(
        got, torch_logits(model.eval(), preprocess(frames, model.cfg)), rtol=0, atol=1e-4
    )


def test_custom_segment_cuts_reject_pairs_and_opset(ckpt, tmp_path, capsys):
    from codedresnext.artifact import load_manifest

    out = tmp_path / "s"
    assert (
        main(
            ["export", str(ckpt), "--out", str(out), "--segments", "0,2", "--reject-block", "3"]
            + ["--classes", "frog", "--quiet"]
        )
        == 0
    )
    m = load_manifest(out)
    assert m.segments.order == ["segment0", "segment1", "segment2"]
    seg = {g.name: g for g in m.of_kind(GraphKind.SEGMENT)}
    assert [seg[n].blocks for n in m.segments.order] == [[0, 0], [1, 2], [3, 4]]
    assert [seg[n].inputs[0].name for n in m.segments.order] == [
        "images",
        "features_in",
        "features",
    ]
    assert "exit_scores" not in seg["segment0"].output_names  # block 0 is plain
    assert [r.to_dict() for r in m.reject] == [
        {"class": "frog", "block": 3, "exit": 2, "a": "reject_frog_a", "b": "reject_frog_b", "part": "a"}
    ]
    assert all(g.verification.passed for g in m.graphs)
    with pytest.raises(CodedResNeXtError, match="opset 16 is too old"):  # an API argument only
        export_graphs(ExportOptions(out=tmp_path / "o16", checkpoint=ckpt, opset=16, progress=False))
    assert main(["export", str(ckpt), "--out", str(tmp_path / "r"), "--reject-block", "0", "--quiet"]) == 2
    assert "coded block index" in capsys.readouterr().err
