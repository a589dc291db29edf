"""`codedresnext train` with bad input: a clear message, exit code 2, nothing half-written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from codedresnext import cli
from codedresnext.checkpoint import save_checkpoint
from codedresnext.model import create_model

ROOT = Path(__file__).resolve().parents[1]


def _train(capsys, *args: str) -> tuple[int, str]:
    rc = cli.main(["train", "--quiet", *args])
    return rc, capsys.readouterr().err


def test_missing_data_path_subprocess(tmp_path, session_cache):
    """Through the real entry point: exit code 2, one line saying what to pass instead."""
    env = {**os.environ, "CODEDRESNEXT_CACHE": str(session_cache)}
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "train", "--preset", "tiny",
         "--data", str(tmp_path / "no-such-data"), "--out", str(out)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2
    assert "codedresnext train: error: dataset path" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_corrupt_archive(cifar10_tgz, tmp_path, capsys):
    cut = tmp_path / "cifar10-jpeg.tar.gz"
    cut.write_bytes(cifar10_tgz.read_bytes()[:400_000])  # a download that stopped early
    rc, err = _train(capsys, "--data", str(cut), "--out", str(tmp_path / "run"))
    assert rc == 2 and "corrupt or truncated" in err
    assert not (tmp_path / "run").exists()


def test_path_traversal_archive(tmp_path, capsys, session_cache):
    arc = tmp_path / "evil.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        m = tarfile.TarInfo("train/../../../outside.jpg")
        m.size = 4
        tar.addfile(m, io.BytesIO(b"evil"))
    rc, err = _train(capsys, "--data", str(arc), "--out", str(tmp_path / "run"))
    assert rc == 2 and "refusing to extract" in err
    assert not (tmp_path / "run").exists()
    # where '../../..' from cache/extracted/.extract-*/ would have written it
    assert (
        not (session_cache / "outside.jpg").exists() and not (session_cache.parent / "outside.jpg").exists()
    )


def test_unknown_preset_fails_before_reading_data(tmp_path, capsys):
    rc, err = _train(
        capsys, "--preset", "resnet50", "--data", str(tmp_path / "x"), "--out", str(tmp_path / "r")
    )
    assert rc == 2 and "unknown preset 'resnet50'" in err and "cifar10" in err
    assert not (tmp_path / "r").exists()


def test_resume_with_a_checkpoint_of_another_preset(small_tree, tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "last.pt", create_model("cifar10"), optimizer={}, step=3, best_accuracy=0.5)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, err = _train(capsys, "--preset", "tiny", "--data", str(small_tree), "--out", str(run), "--resume")
    assert rc == 2
    assert "holds a 'cifar10' model" in err and "'tiny'" in err and "--preset" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing written or changed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume"], "no checkpoint at"),
        (["--batch-size", "1000"], "exceeds the 200 training images"),
        (["--p-drop", "1.5"], "--p-drop must be in [0, 1)"),
    ],
)
def test_other_bad_runs(small_tree, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    rc, err = _train(capsys, "--data", str(small_tree), "--out", str(run), *args)
    assert rc == 2 and message in err
    assert not run.exists()


def test_bad_flag_values_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--data", "x", "--out", "y", "--randaugment", "three"])
    assert e.value.code == 2 and "NUM_OPS,MAGNITUDE" in capsys.readouterr().err


def test_cli_defaults_are_the_train_config_defaults():
    """No default is spelled twice: every option lands on a TrainConfig field with its default."""
    import dataclasses

    from codedresnext.commands.train import config_kwargs
    from codedresnext.train import TrainConfig

    args = cli.build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    kw = config_kwargs(args)
    assert kw == dataclasses.asdict(TrainConfig(data="d", out="o"))
    assert set(kw) == {f.name for f in dataclasses.fields(TrainConfig)}  # every field is an option
