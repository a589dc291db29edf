"""The README's and docs/'s examples hold: they run, parse, and link to files that exist.

- Python blocks (```python) of README.md and docs/*.md are executed. README's run in the workspace
  its own commands made (they use its export); each docs page's run in a fresh directory.
- Every shell command line (```sh blocks and indented blocks) of README.md and docs/*.md is checked
  against the real CLI: `codedresnext ...` parses with the argparse parser, with every option shown
  (optional [--flags] too) known to that command; `python benchmarks/X.py` names a script that
  exists; `make X` a Makefile target.
- README's commands are also run, in order, in a workspace that looks like the user's (ROOT: real
  CIFAR-10 JPEGs; runs/mine/best.pt: a random tiny checkpoint where `train` would have written one),
  or skipped with their reason in SKIP. A new README command in neither list fails.
- Relative links resolve to files in the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

from codedresnext.cli import build_parser
from codedresnext.commands import _args

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_START = ("codedresnext ", "python ", "make ", "torchrun ")
# pages linked from README / docs/index.md that other branches add (cli, deploy, safety, kinds, the
# lead's code map); tolerated only while they do not exist

# why a README command is not run here (matched against the start of the command)
SKIP = {
    "make ": "sets up a venv / runs the whole demo or test suite (minutes); CI runs them",
    "codedresnext train": "training (tests/test_cli_train.py and tests/test_train.py run tiny ones); "
    "the workspace holds a random tiny checkpoint where train writes best.pt",
    "codedresnext build": "needs an NVIDIA GPU with TensorRT 10 or 11 (cannot be installed here)",
}
# small values in place of the README's: short benchmark timings
SHORT = {"--duration": "0.05", "--batch": "1,4"}
# arguments added to a README command (matched against its start)
EXTRA = {"codedresnext evaluate": ["--quiet"]}


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def shell_commands(path: Path) -> list[str]:
    """Command lines of ```sh blocks and indented blocks (continuations joined, comments cut)."""
    out, pending, fence = [], "", None
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence is not None:
            text = line.rstrip() if fence in ("sh", "bash", "shell") else ""
        else:
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


def _without_optional(cmd: str) -> str:
    while re.search(r"\[[^\[\]]*\]", cmd):  # optional [--flags ...], nested ones from the inside out
        cmd = re.sub(r"\s*\[[^\[\]]*\]", "", cmd)
    return cmd


@contextlib.contextmanager
def _placeholder_paths():
    """Docs show placeholders (CKPT, DIR, ROOT) for paths: the parser built here takes any path (the
    walk test, tests/test_cli_walk.py, checks the real path checks); every other value is checked."""
    names = ("existing_file", "existing_dir", "export_dir", "existing_path", "dataset")
    saved = {n: getattr(_args, n) for n in names}
    try:
        for n in names:
            setattr(_args, n, str)
        yield
    finally:
        for n, f in saved.items():
            setattr(_args, n, f)


def cli_problem(cmd: str) -> str | None:
    """Why `codedresnext ...` (or `torchrun ... -m codedresnext.cli ...`) is not a valid command line."""
    words = shlex.split(_without_optional(cmd))
    argv = words[words.index("codedresnext.cli") + 1 :] if "codedresnext.cli" in words else words[1:]
    with _placeholder_paths():
        parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in sub:
        return f"unknown command {argv[:1]}"
    known = set(sub[argv[0]]._option_string_actions)
    shown = cmd.split("codedresnext.cli", 1)[-1]  # torchrun's own options are torchrun's
    unknown = sorted(set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", shown)) - known)
    if unknown:
        return f"options not in `codedresnext {argv[0]}`: {unknown}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit:
            return err.getvalue().strip().splitlines()[-1]
    return None


def command_problem(cmd: str) -> str | None:
    if cmd.startswith("codedresnext ") or cmd.startswith("torchrun "):
        return cli_problem(cmd)
    if cmd.startswith("python "):
        script = shlex.split(cmd)[1]
        return None if (ROOT / script).is_file() else f"no script {script}"
    target = cmd.split()[1]
    makefile = (ROOT / "Makefile").read_text()
    return None if re.search(rf"^{re.escape(target)}:", makefile, flags=re.M) else f"no make target {target}"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_exists_with_its_options(page):
    problems = {c: command_problem(c) for c in shell_commands(page)}
    assert not {c: p for c, p in problems.items() if p}, f"{page.name}: commands that do not parse"


def test_the_checks_can_fail():
    """The parser check rejects what is wrong: an unknown command, an unknown option, a bad value."""
    assert cli_problem("codedresnext no-such-command X")
    assert "--no-such-flag" in cli_problem("codedresnext export CKPT --out D [--no-such-flag]")
    assert cli_problem("codedresnext bench DIR --batch")  # option without its value
    assert cli_problem("codedresnext export CKPT --out D --classes all") is None
    assert command_problem("python benchmarks/no_such_script.py")
    assert command_problem("make no-such-target")
    assert command_problem("make demo") is None


def test_readme_shows_each_journey():
    cmds = shell_commands(README)
    for start in (
        "make demo",
        "make test",
        "codedresnext train",
        "codedresnext export",
        "codedresnext prune",
    ):
        assert any(c.startswith(start) for c in cmds), start
    for start in ("codedresnext predict", "codedresnext build", "codedresnext triton", "codedresnext bench"):
        assert any(c.startswith(start) for c in cmds), start
    assert len(README.read_text().splitlines()) <= 220, "the README is for users: keep it short"


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files"


@pytest.mark.parametrize(
    "page",
    [p for p in DOCS if p != README and python_blocks(p)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_docs_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), {})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_tree, real_images):
    """What the README's reader has: ROOT (real CIFAR-10 JPEGs, 20 train / 10 test per class), a
    trained checkpoint at runs/mine/best.pt (here random tiny weights) and photo.jpg (a real cat)."""
    pytest.importorskip("torch")
    import torch
    from PIL import Image

    from codedresnext.checkpoint import save_checkpoint
    from codedresnext.model import create_model

    d = tmp_path_factory.mktemp("readme")
    (d / "ROOT").symlink_to(small_tree)
    (d / "runs" / "mine").mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(d / "runs" / "mine" / "best.pt", create_model("tiny").eval(), untrained=True)
    i = int((real_images.labels == 3).nonzero()[0][0])
    Image.fromarray(real_images.images[i]).save(d / "photo.jpg")
    return d


def _argv(cmd: str) -> list[str]:
    argv = shlex.split(_without_optional(cmd))
    out = [sys.executable, "-m", "codedresnext.cli"]
    for i, a in enumerate(argv[1:], 1):
        out.append(SHORT.get(argv[i - 1], a).replace("../shared", str(SHARED)))
    return out + next((extra for start, extra in EXTRA.items() if cmd.startswith(start)), [])


def test_readme_journeys_run(workspace, monkeypatch):
    """Each README command runs in the workspace and exits 0, or has a stated reason not to; then
    the README's Python blocks run there (the Detector reads the threshold evaluate wrote)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEDRESNEXT_SHARED": str(SHARED)}
    ran, skipped = [], {}
    for cmd in shell_commands(README):
        why = next((w for start, w in SKIP.items() if cmd.startswith(start)), None)
        if why:
            skipped[cmd] = why
            continue
        assert cmd.startswith("codedresnext "), f"README command without a rule here: {cmd!r}"
        r = subprocess.run(_argv(cmd), cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr[-2000:]}"
        ran.append((cmd, r.stdout))
    # what ran did what the README says
    assert {c.split()[1] for c, _ in ran} >= {
        "export",
        "evaluate",
        "calibrate",
        "prune",
        "predict",
        "triton",
        "bench",
    }
    export = workspace / "exports" / "mine"
    assert (export / "class_cat.onnx").is_file() and (export / "subset_cat__dog.onnx").is_file()
    assert (workspace / "cat.onnx").is_file() and (
        workspace / "triton_repo" / "full" / "config.pbtxt"
    ).is_file()
    assert (workspace / "runs" / "mine" / "eval" / "report.html").is_file()
    assert (export / "calibration" / "calibration.json").is_file() and (
        workspace / "bench" / "bench.json"
    ).is_file()
    predicted = next(out for c, out in ran if c.startswith("codedresnext predict"))
    assert "threshold" in predicted and "photo.jpg" in predicted  # evaluate --graphs wrote it
    assert "codedresnext build" in " ".join(skipped) and "make demo" in skipped
    monkeypatch.chdir(workspace)
    for block in python_blocks(README):
        exec(compile(block, "README.md", "exec"), {})
