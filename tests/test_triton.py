"""`codedresnext triton`: repository layout, and every config.pbtxt matches its ONNX graph."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from test_runtime_graphs import make_export

from codedresnext.deploy.triton import TRITON_DTYPES, parse_config, write_repository
from codedresnext.errors import GraphError


def _check_repo(export_dir, repo, max_batch):
    from codedresnext.artifact import load_manifest

    names = load_manifest(export_dir).names
    assert sorted(p.name for p in repo.iterdir()) == sorted(names)
    for name in names:
        model_file = repo / name / "1" / "model.onnx"
        assert model_file.read_bytes() == (export_dir / f"{name}.onnx").read_bytes()
        cfg = parse_config((repo / name / "config.pbtxt").read_text())
        assert cfg["name"] == name and cfg["platform"] == "onnxruntime_onnx"
        assert cfg["max_batch_size"] == max_batch and cfg["dynamic_batching"]
        model = onnx.load(model_file)
        inits = {i.name for i in model.graph.initializer}
        for section, values in (
            ("input", [v for v in model.graph.input if v.name not in inits]),
            ("output", list(model.graph.output)),
        ):
            real = []
            for v in values:
                t = v.type.tensor_type
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                assert dims[0] == -1  # dynamic batch in the graph
                dt = TRITON_DTYPES[np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name]
                real.append({"name": v.name, "data_type": dt, "dims": dims[1:]})  # Triton dims exclude batch
            assert cfg[section] == real, (name, section)


def test_repository_matches_every_graph(tmp_path):
    d = make_export(tmp_path / "e")
    repo = tmp_path / "repo"
    write_repository(d, repo, max_batch_size=16, preferred_batch=(4, 16, 64))
    _check_repo(d, repo, 16)
    text = (repo / "full" / "config.pbtxt").read_text()
    assert "preferred_batch_size: [ 4, 16 ]" in text  # sizes above max_batch_size are dropped
    cfg = parse_config((repo / "full_uint8" / "config.pbtxt").read_text())
    assert cfg["input"] == [{"name": "frames", "data_type": "TYPE_UINT8", "dims": [32, 32, 3]}]


def test_plan_models_use_tensorrt_platform(tmp_path):
    d = make_export(tmp_path / "e")
    fake_plan = tmp_path / "full.plan"
    fake_plan.write_bytes(b"engine bytes")
    # the build record `codedresnext build` writes beside each plan: its batch profile
    (tmp_path / "full.json").write_text('{"profile": {"min": 1, "opt": 8, "max": 32}}')
    write_repository(d, tmp_path / "repo", graphs=["full"], engines={"full": fake_plan})
    cfg = parse_config((tmp_path / "repo" / "full" / "config.pbtxt").read_text())
    assert cfg["platform"] == "tensorrt_plan"
    assert (tmp_path / "repo" / "full" / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert "KIND_GPU" in (tmp_path / "repo" / "full" / "config.pbtxt").read_text()


def test_manifest_io_mismatch_is_refused(tmp_path):
    import json

    d = make_export(tmp_path / "e")
    m = json.loads((d / "manifest.json").read_text())
    m["graphs"][0]["outputs"] = [{"name": "scores"}]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GraphError, match="differ from the graph"):
        write_repository(d, tmp_path / "repo", graphs=["full"])
    with pytest.raises(GraphError, match="available"):
        write_repository(d, tmp_path / "repo", graphs=["nope"])


def test_triton_cli_on_a_real_tiny_export(tmp_path):
    export = pytest.importorskip("codedresnext.export")
    pytest.importorskip("torch")
    out = tmp_path / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out, preset="tiny", classes=["cat"], segments=True, progress=False, verify=False
        )
    )
    repo = tmp_path / "repo"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "triton",
            str(out),
            "--out",
            str(repo),
            "--max-batch-size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    _check_repo(out, repo, 8)


def test_python_cascade_calls_the_segment_engines_by_bls(tmp_path, capsys):
    """`triton --python --engines E` with an engine for every segment: cascade_py's config names the
    TensorRT plan model of each segment (BLS on a GPU Triton); without them, it runs its segments."""
    import json

    from codedresnext.cli import main

    d = make_export(tmp_path / "e")
    segs = ["segment0", "segment1", "segment2"]
    for s in segs:  # fake plans with the build record `codedresnext build` writes beside each
        (d / f"{s}.plan").write_bytes(b"engine bytes")
        (d / f"{s}.json").write_text('{"profile": {"min": 1, "opt": 8, "max": 32}}')
    (d / "engines.json").write_text(
        json.dumps({"graphs": [{"name": s, "engine": f"{s}.plan"} for s in segs]})
    )
    repo = tmp_path / "repo"
    argv = ["triton", str(d), "--out", str(repo), "--graphs", ",".join(segs), "--python"]
    assert main([*argv, "--engines", str(d / "engines.json")]) == 0
    assert (
        "sends its segments to the TensorRT models segment0, segment1, segment2 (BLS)"
        in capsys.readouterr().out
    )
    text = (repo / "cascade_py" / "config.pbtxt").read_text()
    assert 'key: "segment_models"' in text
    assert "segment0=segment0,segment1=segment1,segment2=segment2" in text
    for s in segs:
        assert parse_config((repo / s / "config.pbtxt").read_text())["platform"] == "tensorrt_plan"
    assert main([*argv[:3], str(tmp_path / "repo2"), *argv[4:]]) == 0
    assert "segment_models" not in (tmp_path / "repo2" / "cascade_py" / "config.pbtxt").read_text()
