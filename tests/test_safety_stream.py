"""Issue 28 item 5: `train --workers N` (streaming) with a corrupt image gives the project's DataError,
one line naming the file (the DataLoader worker's traceback used to wrap it: 53 lines).

Tried here: a real CIFAR-10 tree (2 train / 1 test JPEGs per class) with one train JPEG replaced by
garbage bytes, --workers 1 and 2 -> exit 2, one stderr line naming that file, no traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tree_with_corrupt_jpeg(small_tree, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corrupt") / "tree"
    for split, n in (("train", 2), ("test", 1)):
        for cdir in sorted((small_tree / split).iterdir()):
            (root / split / cdir.name).mkdir(parents=True)
            for f in sorted(cdir.iterdir())[:n]:
                shutil.copyfile(f, root / split / cdir.name / f.name)
    bad = sorted((root / "train" / "truck").iterdir())[-1]
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG any more" * 4)
    return root, bad


@pytest.mark.parametrize("workers", ["1", "2"])
def test_corrupt_image_in_a_worker_is_one_line_naming_the_file(
    tree_with_corrupt_jpeg, tmp_path, capsys, workers
):
    from codedresnext import cli

    root, bad = tree_with_corrupt_jpeg
    args = ["train", "--preset", "tiny", "--data", str(root), "--workers", workers]  # workers stream
    args += ["--max-steps", "1", "--batch-size", "20", "--quiet", "--out", str(tmp_path / "run")]
    rc = cli.main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err and "worker" not in err.lower()
    assert len(err.splitlines()) == 1 and str(bad) in err and "delete or replace the file" in err
