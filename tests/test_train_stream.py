"""Training from an ImageFolder tree on disk (the streaming path): real CIFAR-10 JPEGs re-encoded at
64x64, DataLoader workers, and proof that the split is never decoded into an array."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from codedresnext import cli, data
from codedresnext.checkpoint import load_checkpoint


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: a second one would wait on the CPU core the demo training holds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tree64(small_tree, tmp_path_factory) -> Path:
    """8 train / 3 test real CIFAR-10 images per class, resized to 64x64 and saved as JPEG."""
    root = tmp_path_factory.mktemp("tree64")
    for split, n in (("train", 8), ("test", 3)):
        for cdir in sorted((small_tree / split).iterdir()):
            (root / split / cdir.name).mkdir(parents=True)
            for f in sorted(cdir.iterdir())[:n]:
                with Image.open(f) as im:
                    im.convert("RGB").resize((64, 64), Image.BICUBIC).save(
                        root / split / cdir.name / f.name, quality=90
                    )
    return root


def test_train_streams_a_64px_tree_with_workers(tree64, tmp_path, monkeypatch, capsys):
    """`codedresnext train --preset tiny --data TREE --workers 2 --image-size 64 --max-steps 10`
    (4 steps of 8 images to stay fast): trains, and nothing builds the split's array."""

    def no_arrays(*a, **k):
        raise AssertionError("the split was decoded into memory")

    cache = tmp_path / "cache"
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(cache))
    monkeypatch.setattr(data, "_decode_folder", no_arrays)  # workers are forked: they inherit it
    monkeypatch.setattr(data, "_cached_folder", no_arrays)
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--data", str(tree64), "--workers", "2", "--image-size", "64"]
    rc = cli.main(["train", *args, "--max-steps", "4", "--batch-size", "8", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert not (cache / "arrays").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["streamed"] is True and cfg["train"]["workers"] == 2 and cfg["test_images"] == 30
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [4]  # of the 10 steps of an epoch (80 images / 8)
    assert all(0.0 <= m["test_accuracy"] <= 1.0 and m["train_cross_entropy"] > 0 for m in metrics)
    model, state = load_checkpoint(out / "last.pt")
    assert state["step"] == 4 and model.cfg.class_names == tuple(
        sorted(p.name for p in (tree64 / "train").iterdir())
    )


def test_stream_flag_and_its_errors(tree64, tmp_path, capsys):
    """stream (a recipe field) without workers: the main process decodes each batch; a bad --workers
    is refused."""
    out = tmp_path / "run"
    recipe = tmp_path / "stream.json"
    recipe.write_text('{"stream": true}')
    rc = cli.main(["train", "--data", str(tree64), "--config", str(recipe), "--max-steps", "1",
                   "--batch-size", "8", "--image-size", "64", "--quiet", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["streamed"] is True
    rc = run_cli(["train", "--data", str(tree64), "--workers", "-1", "--out", str(tmp_path / "r2")])
    assert rc == 2 and "argument --workers: expected a whole number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_max_steps_alone_runs_that_many_steps_over_epochs(tree64, tmp_path, capsys):
    """80 images at batch 40 are 2 steps an epoch: --max-steps 3 without --epochs runs 3 steps (two
    epochs, the schedule ending at step 3); with --epochs 1 the epoch ends the run first."""
    args = ["--data", str(tree64), "--image-size", "64", "--batch-size", "40", "--max-steps", "3", "--quiet"]
    rc = cli.main(["train", *args, "--out", str(tmp_path / "a")])
    assert rc == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 3] and metrics[-1]["lr"] < metrics[0]["lr"]
    rc = cli.main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "b")])
    assert rc == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "b" / "last.pt")[1]["step"] == 2
