"""Issue 28 item 8 (first half): a file that is not a checkpoint, passed to export or evaluate, gets
the project's CheckpointError saying what the file looks like and what is expected, never torch's
advice to load it with weights_only=False.

Tried here: a text file, an ONNX graph, an empty file, a .tar.gz dataset, a truncated checkpoint,
for `export` and `evaluate` -> exit 2, one line, "Expected a .pt file written by `codedresnext train`".
"""

from __future__ import annotations

import shutil
import tarfile

import pytest

from codedresnext.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, small_tree):
    from codedresnext.checkpoint import save_checkpoint
    from codedresnext.model import create_model

    d = tmp_path_factory.mktemp("notckpt")
    (d / "notes.pt").write_text("these are not weights\n")
    (d / "empty.pt").write_bytes(b"")
    save_checkpoint(d / "good.pt", create_model("tiny"))
    (d / "truncated.pt").write_bytes((d / "good.pt").read_bytes()[:4000])
    with tarfile.open(d / "data.tar.gz", "w:gz") as tar:
        tar.add(small_tree / "test" / "cat", arcname="test/cat")
    from codedresnext import export

    export.export_graphs(export.ExportOptions(out=d / "e", preset="tiny", progress=False, verify=False))
    shutil.copyfile(d / "e" / "full.onnx", d / "full.onnx")
    return {
        "notes.pt": "a text file",
        "empty.pt": "an empty file",
        "truncated.pt": "a zip archive",
        "data.tar.gz": "a gzip / .tar.gz archive",
        "full.onnx": "an ONNX graph",
    }, d


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_non_checkpoint_files_say_what_they_are_and_what_is_expected(
    bad_files, small_tree, tmp_path, capsys, command
):
    looks, d = bad_files
    for name, what in looks.items():
        out = tmp_path / f"{command}-{name}"
        extra = ["--data", str(small_tree)] if command == "evaluate" else []
        rc = main([command, str(d / name), "--out", str(out), *extra, "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (name, err)
        assert f"it looks like {what}" in err and "Expected a .pt file written by `codedresnext train`" in err
        assert "weights_only" not in err and "Traceback" not in err and len(err.splitlines()) == 1
        assert not out.exists()
