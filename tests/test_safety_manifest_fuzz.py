"""Property test (issue 28 deliver 5): any mutation of a valid manifest.json gives either a manifest
that still loads and whose graphs verify or fail with the project's GraphError family, or a
ManifestError when it is read; never a raw TypeError / KeyError / AttributeError / ValueError.

What hypothesis tries (on the synthetic export of test_runtime_graphs, every graph kind):
- deleted keys anywhere (top level, a graph entry, nested records: segment, reject, verification...);
- retyped values anywhere: null, bools, ints, floats (NaN and +-inf included), strings, lists, objects;
- out-of-range values: negative and huge ints, empty strings and lists, inf;
- foreign paths in a graph's `file`: "../x.onnx", absolute paths, "sub/x.onnx", "..", ".", "a\\b",
  a NUL byte, "" (these must be refused: ManifestError at parse);
- swapped graph files (another entry's file name in `file`): refused when the graph is opened.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runtime_graphs import make_export

from codedresnext.artifact import load_manifest, verified_graph
from codedresnext.errors import GraphError, ManifestError

FOREIGN = ["../x.onnx", "../other/full.onnx", "/tmp/full.onnx", "sub/full.onnx", "..", ".", "a\\b.onnx",
           "full.onnx\x00", "", "./full.onnx", "//full.onnx"]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
out_of_range = st.sampled_from([-1, -(2**63), 2**64, 0, math.inf, -math.inf, "", [], {}, [-1, -2], " "])


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, dict]:
    d = make_export(tmp_path_factory.mktemp("fuzz") / "e")
    return d, json.loads((d / "manifest.json").read_text())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON tree (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple, op: str, value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _check(d: Path, doc: Any) -> None:
    """Load and open everything; only the project's errors may come out."""
    (d / "manifest.json").write_text(json.dumps(doc))  # NaN / Infinity written as Python does
    try:
        m = load_manifest(d)
    except ManifestError:
        return
    except Exception as e:  # noqa: BLE001 - the property: nothing else escapes
        pytest.fail(f"raw {type(e).__name__} from load_manifest: {e}")
    for g in m.graphs:
        try:
            verified_graph(d, g)
        except GraphError:
            pass
    try:
        m.save(d / "resaved")
    except GraphError:
        pass


@pytest.fixture
def work(export, tmp_path_factory):
    d, doc = export
    w = tmp_path_factory.mktemp("w")
    for f in d.glob("*.onnx"):
        shutil.copyfile(f, w / f.name)
    (w / "resaved").mkdir()
    return w, doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_gives_the_projects_error(work, data):
    d, doc = work
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    op = data.draw(st.sampled_from(["delete", "retype", "out_of_range"]), label="op")
    value = None
    if op == "retype":
        value = data.draw(json_values, label="value")
    elif op == "out_of_range":
        value = data.draw(out_of_range, label="value")
    _check(d, _mutate(doc, path, op, value))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_foreign_paths_are_always_refused_at_parse(work, data):
    d, doc = work
    i = data.draw(st.integers(0, len(doc["graphs"]) - 1), label="graph")
    bad = data.draw(st.sampled_from(FOREIGN) | st.text(min_size=1, max_size=8).map(lambda t: f"{t}/{t}"))
    (d / "manifest.json").write_text(json.dumps(_mutate(doc, ("graphs", i, "file"), "set", bad)))
    with pytest.raises(ManifestError, match="not a plain file name"):
        load_manifest(d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_swapped_graph_files_are_refused_when_opened(work, data):
    d, doc = work
    n = len(doc["graphs"])
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True), label="pair")
    a, b = doc["graphs"][i], doc["graphs"][j]
    mutated = _mutate(doc, ("graphs", i, "file"), "set", b["file"])  # entry i now names j's file
    (d / "manifest.json").write_text(json.dumps(mutated))
    entry = load_manifest(d).graph(a["name"])
    if a["sha256"] == b["sha256"]:
        return  # byte-identical graphs: nothing to tell apart
    with pytest.raises(ManifestError, match="sha256"):
        verified_graph(d, entry)
