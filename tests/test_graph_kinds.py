"""The graph-kind registry: every GraphKind has one definition, plans its own graphs, and the
runtime's kind traits agree with what the export side builds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codedresnext.artifact import DETECTOR_KINDS, HEAD_KINDS, META_GRAPH, GraphKind
from codedresnext.export import kinds
from codedresnext.export.builder import build_graph
from codedresnext.export.meta import graph_metadata
from codedresnext.export.options import ExportOptions
from codedresnext.export.plan import plan_graphs
from codedresnext.model_config import build_config


@pytest.fixture(scope="module")
def cfg():
    return build_config("tiny")


def test_every_kind_has_exactly_one_definition():
    assert set(kinds.KINDS) == set(GraphKind)
    assert all(d.kind == k for k, d in kinds.KINDS.items())


def test_traits_replace_kind_lists():
    assert DETECTOR_KINDS == (GraphKind.CLASS, GraphKind.SUBSET)
    assert HEAD_KINDS == (GraphKind.FULL, GraphKind.MULTI_EXIT)
    assert [k for k in GraphKind if not k.standalone] == [GraphKind.SEGMENT, GraphKind.REJECT]


@pytest.mark.parametrize("reject_block", [1, "all"])
def test_each_kind_plans_only_its_own_graphs(cfg, reject_block):
    opts = ExportOptions(
        out="unused",
        classes=[cfg.class_names[0]],
        subsets=[cfg.class_names[:2]],
        multi_exit=True,
        segments="all",
        masked=True,
        reject_block=reject_block,
    )
    plan = plan_graphs(cfg, opts)
    seen = {p.spec.kind for p in plan}
    reject = GraphKind.REJECT if reject_block == 1 else GraphKind.REJECT_PROBE
    assert seen == set(GraphKind) - ({GraphKind.REJECT, GraphKind.REJECT_PROBE} - {reject})
    ctx = kinds.PlanContext(cfg, opts, [0], {"uint8": False})
    for kind, d in kinds.KINDS.items():
        assert all(p.spec.kind == kind for p in d.plan(ctx))
    assert plan[0].name == kinds.FULL_NAME


def _outputs(cfg, spec):
    weights = _random_weights(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    model = build_graph(cfg, weights, spec, metadata=meta)
    graph = json.loads({p.key: p.value for p in model.metadata_props}[META_GRAPH])
    return [o.name for o in model.graph.output], graph


def _random_weights(cfg):
    """BN-folded weights of a seeded random tiny model."""
    torch = pytest.importorskip("torch")
    from codedresnext.export.fold import fold_weights
    from codedresnext.model import create_model

    torch.manual_seed(0)
    return fold_weights(create_model("tiny").eval())


def test_kind_hooks_decide_outputs_and_facts(cfg):
    a, b = kinds.reject_specs(cfg, 2, 1)
    outs, graph = _outputs(cfg, a)
    assert outs == ["reject_distance", "reject_energies", "features"]
    assert graph["reject"] == {"block": 1, "class": 2} and graph["masked"] is False
    outs, graph = _outputs(cfg, b)
    assert outs == ["logits"] and graph["reject"] is None
    probe = kinds.reject_probe_spec(cfg, 2)
    outs, graph = _outputs(cfg, probe)
    assert graph["reject_probe"] == list(probe.probe)
    assert outs == ["logits"] + [
        n for i in probe.probe for n in (f"reject_distance_block{i}", f"reject_energies_block{i}")
    ]
    outs, graph = _outputs(cfg, kinds.path_spec(cfg, [2], masked=True))
    assert outs == ["logits"] and graph["masked"] is True
    segs = kinds.segment_specs(cfg, "all")
    assert _outputs(cfg, segs[0])[0] == ["features", "exit_scores"]
    j = len(cfg.coded_blocks)
    assert _outputs(cfg, kinds.multi_exit_spec(cfg))[0] == ["logits"] + [
        n for e in range(j) for n in (f"exit{e}_scores", f"exit{e}_energies")
    ]
    cls = kinds.path_spec(cfg, [2])
    assert kinds.kind_of(cls).computed_keep(cls) == cls.keep  # analytic params of the pruned path
    masked = kinds.path_spec(cfg, [2], masked=True)
    assert kinds.kind_of(masked).computed_keep(masked) is None  # nothing removed
    assert kinds.kind_of(probe).computed_keep(probe) is None  # probed blocks compute all branches


_ADD_KIND_CHECK = """
import json, sys
import torch
from codedresnext.export import ExportOptions, export_graphs
from codedresnext.model import create_model

torch.manual_seed(0)
model = create_model("tiny").eval()
names = model.cfg.class_names
opts = ExportOptions(out=sys.argv[1], masked=True, subsets=[names[:2]], verify_batch=2, verify_images=0,
                     progress=False)
manifest = export_graphs(opts, model=model)
print(json.dumps({g.name: [g.kind, g.verification.passed, g.verification.max_abs] for g in manifest.graphs}))
"""


def test_adding_a_kind_touches_three_files(cfg, tmp_path):
    """docs/graph-kinds.md's example, applied to a copy of the package (keys.py, the kind's module,
    the registry), exports its kind verified against PyTorch with no other file changed."""
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[1]
    member, module, register = re.findall(
        r"```py\n(.*?)```", (root / "docs/graph-kinds.md").read_text(), re.S
    )
    pkg = tmp_path / "src" / "codedresnext"
    shutil.copytree(root / "codedresnext", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    keys = pkg / "artifact" / "keys.py"
    text = keys.read_text()
    assert "\n    __str__ = str.__str__" in text
    keys.write_text(
        text.replace("\n    __str__ = str.__str__", "\n" + member + "\n    __str__ = str.__str__", 1)
    )
    (pkg / "export" / "kinds" / "masked_subset.py").write_text(module)
    reg = pkg / "export" / "kinds" / "__init__.py"
    text = reg.read_text()
    assert "Masked(), " in text
    text = text.replace("Masked(), ", "Masked(), MaskedSubset(), ").replace(
        "from .masked import Masked\n", "from .masked import Masked\n" + register
    )
    reg.write_text(text)
    run = subprocess.run(
        [sys.executable, "-c", _ADD_KIND_CHECK, str(tmp_path / "out")],
        cwd=tmp_path / "src",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    graphs = json.loads(run.stdout.strip().splitlines()[-1])
    a, b = cfg.class_names[:2]
    kind, passed, max_abs = graphs[f"masked_subset_{a}__{b}"]
    assert kind == "masked-subset" and passed and max_abs < 1e-4
    assert graphs[f"subset_{a}__{b}"][0] == "subset"  # the existing kinds are planned as before
