"""Write detector thresholds into an export: manifest graph entries and ONNX graph metadata.

numpy/onnx only (no torch), so thresholds can also be recalibrated on a device. Graphs of kind
"class" and "subset" get `thresholds` = {class name: logit threshold} for their classes, both in
their manifest entry and in the metadata key artifact.META_THRESHOLDS; the rewritten file's sha256
is updated in the manifest. Every file is replaced atomically (temp file + rename), and the
manifest is written last, so readers never see a threshold the graph does not carry.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from . import artifact
from ._io import sha256_file, write_bytes
from .errors import GraphError

DETECTOR_KINDS = ("class", "subset")


def _validate(thresholds: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, t in thresholds.items():
        try:
            t = float(t)
        except (TypeError, ValueError) as e:
            raise GraphError(f"threshold for {name!r} is not a number: {t!r}") from e
        if not math.isfinite(t):
            raise GraphError(f"threshold for {name!r} is {t}; thresholds must be finite")
        out[str(name)] = t
    return out


def _set_graph_metadata(path: Path, values: dict[str, float]) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external weights stay where they are
    props = [p for p in model.metadata_props if p.key != artifact.META_THRESHOLDS]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = artifact.META_THRESHOLDS, json.dumps(values, sort_keys=True)
    write_bytes(path, model.SerializeToString())


def write_thresholds(
    export_dir: str | os.PathLike, thresholds: dict[str, float], *, source: dict | None = None
) -> list[str]:
    """Store `thresholds` ({class name: threshold}) in every detector graph of `export_dir`.

    A graph is updated only when all its classes have a threshold. `source` (e.g. how they were
    chosen) is recorded in the manifest. Returns the names of the updated graphs.
    """
    export_dir = Path(export_dir)
    thresholds = _validate(thresholds)
    manifest = artifact.load_manifest(export_dir)
    graphs = [g for g in manifest.get("graphs", []) if g.get("kind") in DETECTOR_KINDS]
    known = {c for g in graphs for c in g.get("classes", [])}
    unknown = sorted(set(thresholds) - known)
    if unknown:
        raise GraphError(
            f"no detector graph in {export_dir} for {unknown}; export them with "
            "`codedresnext export CKPT --classes all` (known: " + ", ".join(sorted(known)) + ")"
        )
    updated = []
    for g in graphs:
        classes = list(g.get("classes", []))
        if not classes or not all(c in thresholds for c in classes):
            continue
        path = export_dir / g["file"]
        if not path.is_file():
            raise GraphError(f"manifest lists {g['file']} but {path} is missing; re-export")
        values = {c: thresholds[c] for c in classes}
        _set_graph_metadata(path, values)
        g["thresholds"] = values
        g["sha256"] = sha256_file(path)
        updated.append(g["name"])
    merged = {**manifest.get("thresholds", {}), **thresholds}
    manifest["thresholds"] = dict(sorted(merged.items()))
    if source is not None:
        manifest["thresholds_source"] = source
    artifact.save_manifest(export_dir, manifest)
    return updated


def read_thresholds(export_dir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """{graph name: thresholds} from the graphs' metadata, checked against the manifest."""
    export_dir = Path(export_dir)
    manifest = artifact.load_manifest(export_dir)
    out = {}
    for g in manifest.get("graphs", []):
        if g.get("kind") not in DETECTOR_KINDS:
            continue
        meta = artifact.read_metadata(export_dir / g["file"]).get(artifact.META_THRESHOLDS)
        if meta is None:
            continue
        if g.get("thresholds") != meta:
            raise GraphError(
                f"{g['file']}: thresholds in the graph {meta} differ from the manifest "
                f"{g.get('thresholds')}; rerun `codedresnext evaluate --graphs {export_dir}`"
            )
        out[g["name"]] = {k: float(v) for k, v in meta.items()}
    return out
