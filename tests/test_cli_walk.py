"""Every CLI command walked with bad values (zero, negative, missing, wrong type of file, unknown
class): exit 2, one line on stderr, no traceback. The command list comes from the parser, so a new
command without cases here fails `test_every_command_has_bad_input_cases`. Plus the journeys of
issue 29 (predict decides or says why not; reject probes and masked graphs are refused;
RejectDetector on probes names the fix), the CLI's size, and the torch-free install's answer.

What was tried and what each gives is the CASES table itself (argv -> a phrase of the message).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from conftest import ROOT

from codedresnext.cli import build_parser
from codedresnext.commands._args import option_count
from codedresnext.errors import GraphError

TORCH_COMMANDS = ("train", "precise-bn", "fit-exits", "evaluate", "export")
MAX_OPTIONS = 100  # issue 29: well under 100 options in all commands together


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_tree):
    """Real inputs to be wrong about: a tiny export (class, masked, reject probe graphs), a checkpoint,
    a text file, a directory without a manifest, an image."""
    pytest.importorskip("torch")
    from PIL import Image

    from codedresnext.checkpoint import save_checkpoint
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.model import create_model

    d = tmp_path_factory.mktemp("walk")
    export_graphs(
        ExportOptions(
            out=d / "export",
            preset="tiny",
            classes=["cat"],
            masked=True,
            reject_block="all",
            verify=False,
            progress=False,
        )
    )
    save_checkpoint(d / "tiny.pt", create_model("tiny"), untrained=True)
    (d / "notes.txt").write_text("not a checkpoint, graph, image or recipe\n")
    (d / "plain").mkdir()
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(d / "img.png")
    return {
        "export": str(d / "export"),
        "full": str(d / "export" / "full.onnx"),
        "ckpt": str(d / "tiny.pt"),
        "text": str(d / "notes.txt"),
        "plain": str(d / "plain"),
        "missing": str(d / "no-such-thing"),
        "img": str(d / "img.png"),
        "data": str(small_tree),
        "out": str(d / "out"),
    }


# command -> [(argv after the command with {placeholders} from `files`, a phrase of the message)]
CASES = {
    "train": [
        ("--data {missing} --out {out}", "no such file or directory"),
        ("--data {text} --out {out} --max-steps 1", "notes.txt"),
        ("--data {data} --out {out} --epochs 0", "--epochs: expected a whole number >= 1, not '0'"),
        ("--data {data} --out {out} --max-steps -3", "--max-steps: expected a whole number >= 1"),
        ("--data {data} --out {out} --batch-size -4", "--batch-size: expected a whole number >= 1"),
        ("--data {data} --out {out} --lr 0", "--lr: expected a number > 0"),
        ("--data {data} --out {out} --lr nan", "--lr: expected a number > 0"),
        ("--data {data} --out {out} --workers -1", "--workers: expected a whole number >= 0"),
        ("--data {data} --out {out} --image-size 4", "--image-size: expected a whole number >= 8"),
        ("--data {data} --out {out} --epochs three", "not 'three'"),
        ("--data {data} --out {out} --preset resnet50", "invalid choice: 'resnet50'"),
        ("--data {data} --out {out} --config {missing}", "--config: no such file"),
        ("--data {data} --out {out} --config {plain}", "is a directory; give a file"),
        ("--data {data} --out {out} --config {text}", "not a JSON recipe"),
        ("--data {data} --out {out} --init {missing}", "--init: no such file"),
        ("--data {data}", "the following arguments are required: --out"),
    ],
    "precise-bn": [
        ("{missing} --data {data} --out {out}", "no such file"),
        ("{plain} --data {data} --out {out}", "is a directory"),
        ("{ckpt} --data {data} --out {out} --images 0", "--images: expected a whole number >= 1"),
        ("{ckpt} --data {data} --out {out} --evaluate -5", "--evaluate: expected a whole number >= 1"),
        ("{ckpt} --data {missing} --out {out}", "--data: no such file or directory"),
        ("{ckpt} --data {data} --out {out} --image-size 0", "--image-size: expected a whole number >= 8"),
        ("{text} --data {data} --out {out}", "notes.txt"),
    ],
    "fit-exits": [
        ("{missing} --data {data} --out {out}", "no such file"),
        ("{ckpt} --data {data} --out {out} --images 0", "--images: expected a whole number >= 1"),
        ("{ckpt} --data {data} --out {out} --images -2", "--images: expected a whole number >= 1"),
        ("{ckpt} --data {data} --out {out} --evaluate -1", "--evaluate: expected a whole number >= 0"),
        ("{ckpt} --data {missing} --out {out}", "--data: no such file or directory"),
        ("{text} --data {data} --out {out}", "notes.txt"),
    ],
    "evaluate": [
        ("{missing} --data {data} --out {out}", "no such file"),
        ("{ckpt} --data {data} --out {out} --limit 5", "--limit: expected a whole number >= 100, not '5'"),
        ("{ckpt} --data {data} --out {out} --limit 0", "--limit: expected a whole number >= 100"),
        ("{ckpt} --data {data} --out {out} --graphs {plain}", "has no manifest.json"),
        ("{ckpt} --data {data} --out {out} --graphs {missing}", "no such directory"),
        ("{ckpt} --data {data} --out {out} --precision int4", "invalid choice: 'int4'"),
        ("{ckpt} --data {data} --out {out} --ood {missing}", "--ood: no such file or directory"),
        ("{ckpt} --data {data} --out {out} --precision fp16", "pass --graphs EXPORT_DIR too"),
        ("{text} --data {data} --out {out}", "notes.txt"),
    ],
    "export": [
        ("{missing} --out {out}", "no such file"),
        ("--out {out}", "give a checkpoint path or --preset NAME"),
        ("{ckpt} --out {out} --classes kitten", "unknown class 'kitten'"),
        ("{ckpt} --out {out} --subset cat,kitten", "kitten"),
        ("{ckpt} --out {out} --subset ,", "expected comma-separated names"),
        ("{ckpt} --out {out} --segments -1", "expected 'all' or coded block indices"),
        ("{ckpt} --out {out} --segments two", "expected 'all' or coded block indices"),
        ("{ckpt} --out {out} --reject-block -2", "expected a coded block index such as 3, or 'all'"),
        ("{ckpt} --out {out} --int8 {missing}", "--int8: no such file or directory"),
        ("--preset resnet50 --out {out}", "invalid choice: 'resnet50'"),
        ("{text} --out {out}", "notes.txt"),
        ("{ckpt} --out {export}", "not empty"),
    ],
    "prune": [
        ("{missing} --class cat --out {out}", "no such file"),
        ("{full} --class kitten --out {out}/x.onnx", "kitten"),
        ("{full} --subset , --out {out}/x.onnx", "expected comma-separated names"),
        ("{text} --class cat --out {out}/x.onnx", "notes.txt"),
        ("{full} --out {out}/x.onnx", "one of the arguments --class --subset is required"),
    ],
    "build": [
        ("{missing}", "no such directory"),
        ("{plain}", "has no manifest.json"),
        ("{full}", "is a file; give a directory"),
        ("{export} --batch 8,1,32", "expected MIN <= OPT <= MAX"),
        ("{export} --batch 0,1,2", "expected MIN,OPT,MAX batch sizes"),
        ("{export} --precision int4", "invalid choice: 'int4'"),
        ("{export} --graphs ,", "expected comma-separated names"),
    ],
    "calibrate": [
        ("{missing} --data {data}", "no such directory"),
        ("{plain} --data {data}", "has no manifest.json"),
        ("{export} --data {data} --max-accuracy-loss -1", "--max-accuracy-loss: expected a number >= 0"),
        ("{export} --data {data} --max-recall-loss -0.5", "--max-recall-loss: expected a number >= 0"),
        ("{export} --data {data} --limit 5", "--limit: expected a whole number >= 100"),
        ("{export} --data {data} --limit 0", "--limit: expected a whole number >= 100"),
        ("{export} --data {missing}", "--data: no such file or directory"),
        ("{export} --data {data} --backend tensorflow", "invalid choice: 'tensorflow'"),
        ("{export} --data {data} --batch 0", "unrecognized arguments: --batch 0"),  # gone: a fixed 64
    ],
    "bench": [
        ("{export} --duration 0", "--duration: expected a number > 0, not '0'"),
        ("{export} --duration -1", "--duration: expected a number > 0, not '-1'"),
        ("{export} --duration inf", "--duration: expected a number > 0"),
        ("{export} --threads 0", "--threads: expected a whole number >= 1"),
        ("{export} --batch 0", "--batch: expected comma-separated whole numbers >= 1"),
        ("{export} --batch a,b", "--batch: expected comma-separated whole numbers"),
        ("{plain}", "has no manifest.json"),
        ("{missing}", "no such directory"),
        ("{export} --data {missing}", "--data: no such file or directory"),
        ("{export} --device cuda", "--device is for --backend torch"),
        ("{export} --graphs class_kitten --quiet", "class_kitten"),
    ],
    "predict": [
        ("{missing} --graph {full}", "no such file"),
        ("{img} --graph full --dir {export} --top 0", "--top: expected a whole number >= 1"),
        ("{img} --graph full --dir {plain}", "has no manifest.json"),
        ("{img} --graph class_kitten --dir {export}", "class_kitten"),
        ("{img} --graph {missing}", "no-such-thing"),
        ("{text} --graph full --dir {export}", "cannot read"),
        ("{img} --graph masked_cat --dir {export}", "masked per-class graph"),
        ("{img} --graph reject_probe_cat --dir {export}", "reject probe"),
    ],
    "triton": [
        ("{export} --out {out} --max-batch-size 0", "--max-batch-size: expected a whole number >= 1"),
        ("{export} --out {out} --instances 0", "--instances: expected a whole number >= 1"),
        ("{export} --out {out} --threads 0", "--threads: expected a whole number >= 1"),
        ("{missing} --out {out}", "no such directory"),
        ("{export} --out {out} --engines {missing}", "--engines: no such file"),
    ],
    "serve": [
        ("{missing}", "no such directory"),
        ("{full}", "is a file; give a directory"),
        ("{plain} --http-port 0", "--http-port: expected a port number in 1..65535, not '0'"),
        ("{plain} --grpc-port 70000", "--grpc-port: expected a port number in 1..65535"),
        ("{plain} --ready-timeout 0", "--ready-timeout: expected a number > 0"),
        ("{plain} --http-port 8000 --grpc-port 8000", "both 8000"),
    ],
    "bundle": [
        ("{missing} --classes cat --out {out}", "no such directory"),
        ("{plain} --classes cat --out {out}", "has no manifest.json"),
        ("{export} --classes , --out {out}", "expected comma-separated names"),
        ("{export} --classes kitten --out {out}", "kitten"),
        ("{export} --classes cat --out {out} --batch 8,1,2", "expected MIN <= OPT <= MAX"),
        ("{export} --classes cat --out {out} --dla-core -1", "--dla-core: expected a whole number >= 0"),
        ("{export} --out {out}", "the following arguments are required: --classes"),
    ],
    "deepstream": [
        ("{missing} --classes cat --out {out}", "no such directory"),
        ("{plain} --classes cat --out {out}", "has no manifest.json"),
        ("{export} --classes kitten --out {out}", "kitten"),
        ("{export} --classes cat --out {out} --batch 0", "--batch: expected a whole number >= 1"),
        ("{export} --classes cat --out {out} --precision int4", "invalid choice: 'int4'"),
    ],
}


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_every_command_has_bad_input_cases():
    assert set(CASES) == set(_commands()), "a command without walk cases (or cases for a gone command)"


@pytest.mark.parametrize(
    "command, argv, phrase",
    [(c, a, p) for c, cases in CASES.items() for a, p in cases],
    ids=[f"{c}:{a.split('{', 1)[0] + a.rsplit('}', 1)[-1]}" for c, cases in CASES.items() for a, _ in cases],
)
def test_bad_input_is_one_line_and_exit_2(files, capsys, command, argv, phrase):
    out = Path(files["out"])
    shutil.rmtree(out, ignore_errors=True)
    args = [command, *(a.format(**files) for a in argv.split())]
    rc = run_cli(args)
    err = capsys.readouterr().err
    assert rc == 2, f"{args}: exit {rc}, {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"codedresnext {command}: error: "), err
    assert phrase in lines[0], err
    assert not out.exists() or not any(out.iterdir()), "a refused command left output behind"


def test_the_cli_stays_lean():
    """Well under 100 options in all commands; every option has a help text that states its default."""
    counts = option_count(build_parser())
    assert sum(counts.values()) < MAX_OPTIONS, counts
    assert max(counts.values()) <= 15, counts
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if isinstance(a, argparse._HelpAction) or not a.option_strings:
                continue
            assert a.help, f"{name} {a.option_strings[0]} has no help text"
            if a.default not in (None, False, argparse.SUPPRESS, []):
                assert "default" in a.help, f"{name} {a.option_strings[0]}: default not shown"


# --- journeys ----------------------------------------------------------------------------------


def test_predict_says_why_there_is_no_decision_then_decides(files, tmp_path, capsys):
    from codedresnext.runtime.thresholds.detector import write_thresholds

    argv = ["predict", files["img"], "--graph", "class_cat", "--dir"]
    assert run_cli([*argv, files["export"]]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(rf"{re.escape(files['img'])}: cat logit -?\d+\.\d{{3}}", out[0])
    assert "no decision" in out[1] and "codedresnext evaluate" in out[1] and "--graphs" in out[1]
    d = tmp_path / "export"
    shutil.copytree(files["export"], d)
    write_thresholds(d, {"cat": 0.0})
    assert run_cli([*argv, str(d)]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    m = re.fullmatch(r".*: cat (YES|no) \(logit (-?\d+\.\d+), threshold 0\.000\)", line)
    assert m and (m[1] == "YES") == (float(m[2]) > 0), line


def test_predict_refuses_a_reject_probe_instead_of_printing_a_score(files, capsys):
    assert run_cli(["predict", files["img"], "--graph", "reject_probe_cat", "--dir", files["export"]]) == 2
    got = capsys.readouterr()
    assert got.out == "" and "1.000" not in got.err and "codedresnext calibrate" in got.err


def test_detector_without_threshold_names_evaluate(files):
    from codedresnext.runtime import Detector

    with Detector(files["export"], "class_cat") as det, pytest.raises(GraphError) as e:
        det.decide(np.zeros((1, 32, 32, 3), np.uint8))
    assert "codedresnext evaluate" in str(e.value) and "--graphs" in str(e.value)


def test_reject_detector_on_probes_names_calibrate_and_the_pair_export(files):
    from codedresnext.runtime import RejectDetector

    with pytest.raises(GraphError) as e:
        RejectDetector.from_directory(files["export"], "cat")
    msg = str(e.value)
    assert "reject probe" in msg and "codedresnext calibrate" in msg and "--reject-block J" in msg


# --- a torch-free install -------------------------------------------------------------------------

BLOCKER = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "torchvision"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, _NoTorch())
    """
)


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("notorch")
    (d / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), str(ROOT)])}


def test_torch_commands_name_the_train_extra_without_torch(files, no_torch_env):
    """`pip install .` (no torch): each training-side command answers with one line naming the extra."""
    argv = {
        "train": ["--data", files["data"], "--out", files["out"]],
        "precise-bn": [files["ckpt"], "--data", files["data"], "--out", files["out"]],
        "fit-exits": [files["ckpt"], "--data", files["data"], "--out", files["out"]],
        "evaluate": [files["ckpt"], "--data", files["data"], "--out", files["out"]],
        "export": [files["ckpt"], "--out", files["out"]],
    }
    assert set(argv) == set(TORCH_COMMANDS)
    for command, args in argv.items():
        r = subprocess.run(
            [sys.executable, "-m", "codedresnext.cli", command, *args],
            env=no_torch_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, (command, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"codedresnext {command} needs the Python package 'torch'" in r.stderr
        assert "pip install 'codedresnext[train]'" in r.stderr
    r = subprocess.run(  # the blocker blocks: the torch-free core still runs
        [sys.executable, "-c", "import codedresnext.cli, sys; import torch"],
        env=no_torch_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "No module named 'torch'" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "predict", files["img"], "--graph", files["full"]],
        env=no_torch_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and files["img"] in r.stdout, r.stderr


def test_needs_are_declared_by_exactly_the_torch_commands():
    from codedresnext.cli import command_module

    for name in _commands():
        needs = getattr(command_module(name), "NEEDS", ())
        assert ("torch" in needs) == (name in TORCH_COMMANDS), name


def test_docs_cli_page_lists_every_command_and_option():
    """docs/cli.md stays true to the parser: each command has a section, each option a row."""
    text = (ROOT / "docs" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        section = text.split(f"\n## {name}", 1)[1].split("\n## ", 1)[0]
        assert "Example:" in section and f"codedresnext {name} " in section, name
        for a in p._actions:
            if a.option_strings and not isinstance(a, argparse._HelpAction):
                assert f"| `{', '.join(a.option_strings)}" in section, (name, a.option_strings)
