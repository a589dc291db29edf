"""The README's examples run as written (Polygraphy-style executed docs).

Python blocks are executed. Shell examples are parsed from README.md's code blocks, so the README
cannot drift: every command line there is either run (with temporary directories for DIR/CKPT,
short benchmark durations, optional [--flags] dropped) or skipped with its reason in SKIP. A new
README command that is in neither list fails `test_every_readme_command_is_run_or_skipped`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

COMMAND_START = ("codedresnext ", "python ", "make ", "torchrun ")

# why a README command is not run here (matched against the start of the command)
SKIP = {
    "make demo": "sets up a venv and runs the whole demo (minutes); CI runs it",
    "make test": "runs the whole test suite",
    "codedresnext train": "training (tests/test_cli_train.py and tests/test_train.py run tiny ones)",
    "codedresnext evaluate": "scores the 10,000-image test set on every class graph (minutes); "
    "tests/test_evaluate.py runs it on a small tree",
    "codedresnext precise-bn": "decodes the 50,000-image CIFAR-10 train split and scores the test set "
    "(minutes); tests/test_precise_bn.py runs it on a small tree",
    "codedresnext build": "needs an NVIDIA GPU with TensorRT 10 or 11 (cannot be installed here)",
    "python benchmarks/": "benchmarks take minutes on an idle machine; they write benchmarks/results/",
}
# small values in place of the README's (the command line is otherwise the README's own): short
# benchmark timings, and the CPU preset for the random-weight export
SHORT = {"--duration": "0.05", "--warmup": "0.01", "--batch": "1,4", "--preset": "tiny"}
# arguments added to a command (matched against its start): fewer held-out images for calibrate (the
# README's line uses all 5,000 per half and the reject probes of every class)
EXTRA = {"codedresnext calibrate": ["--limit", "200"]}


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    """Shell command lines of the README's indented code blocks (continuations joined, comments cut)."""
    out, pending = [], ""
    for line in (ROOT / "README.md").read_text().splitlines():
        text = line[4:].rstrip() if line.startswith("    ") else ""
        if pending:
            text = pending + " " + text.strip()
            pending = ""
        elif not text.startswith(COMMAND_START):
            continue
        if text.endswith("\\"):
            pending = text[:-1].rstrip()
            continue
        out.append(re.sub(r"\s+#.*$", "", text).strip())
    return out


def _skip_reason(cmd: str) -> str | None:
    if "..." in cmd:
        return "placeholder (...)"
    return next((why for start, why in SKIP.items() if cmd.startswith(start)), None)


def test_readme_has_python_examples():
    assert _python_blocks(), "README.md should show the Python API"


def test_readme_python_examples_run():
    for block in _python_blocks():
        exec(compile(block, "README.md", "exec"), {})


def test_readme_commands_are_found():
    cmds = readme_commands()
    assert any(c.startswith("codedresnext export CKPT --out DIR") and "[--masked]" in c for c in cmds)
    assert "codedresnext prune DIR/full.onnx --class cat --out cat.onnx" in cmds
    assert "make demo" in cmds


def _substitute(cmd: str, *, ckpt: Path, export_dir: Path, fresh_dir: Path) -> list[str]:
    while re.search(r"\[[^\[\]]*\]", cmd):  # optional [--flags ...], nested ones from the inside out
        cmd = re.sub(r"\s*\[[^\[\]]*\]", "", cmd)
    argv = shlex.split(cmd)
    out = [sys.executable, "-m", "codedresnext.cli"]
    for i, a in enumerate(argv[1:], 1):
        if argv[i - 1] in SHORT:
            a = SHORT[argv[i - 1]]
        a = a.replace("../shared", str(SHARED)).replace("CKPT", str(ckpt))
        if a == "DIR" or a.startswith("DIR/"):
            a = a.replace("DIR", str(fresh_dir if argv[1] == "export" else export_dir), 1)
        out.append(a)
    return out + next((extra for start, extra in EXTRA.items() if cmd.startswith(start)), [])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, real_images):
    """A tiny random-weight checkpoint and two real CIFAR images as cat.jpg / ship.jpg."""
    pytest.importorskip("torch")
    from PIL import Image

    from codedresnext.checkpoint import save_checkpoint
    from codedresnext.model import create_model

    d = tmp_path_factory.mktemp("readme")
    import torch

    torch.manual_seed(0)
    save_checkpoint(d / "tiny.pt", create_model("tiny").eval(), untrained=True)
    for name, k in (("cat", 3), ("ship", 8)):
        i = int((real_images.labels == k).nonzero()[0][0])
        Image.fromarray(real_images.images[i]).save(d / f"{name}.jpg")
    return d


def test_every_readme_command_is_run_or_skipped(workdir):
    """Each README shell command runs offline and exits 0, or has a stated reason not to."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEDRESNEXT_SHARED": str(SHARED)}
    ran, skipped, export_dir = [], {}, None
    for n, cmd in enumerate(readme_commands()):
        why = _skip_reason(cmd)
        if why:
            skipped[cmd] = why
            continue
        assert cmd.startswith("codedresnext "), f"README command without a rule here: {cmd!r}"
        fresh = workdir / f"export{n}"
        export_dir = export_dir or fresh
        argv = _substitute(cmd, ckpt=workdir / "tiny.pt", export_dir=export_dir, fresh_dir=fresh)
        r = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr[-2000:]}"
        ran.append(cmd)
    # what ran did what the README says
    assert (workdir / "cat.onnx").is_file() and (workdir / "catdog.onnx").is_file()
    assert (workdir / "triton_repo" / "full" / "config.pbtxt").is_file()
    assert (export_dir / "bench" / "bench.md").is_file()
    cal = json.loads((workdir / "D" / "calibration" / "calibration.json").read_text())
    assert "early_exit" in cal and "early_reject_blocks" in cal  # the README's calibrate line did both
    assert {c.split()[1] for c in ran} >= {"export", "prune", "bench", "predict", "triton"}
    assert all(skipped.values()) and "codedresnext build" in " ".join(skipped)
