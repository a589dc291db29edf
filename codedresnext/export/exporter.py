"""`export_graphs`: one checkpoint (or a preset's random weights) -> verified graphs + manifest.json.

Flow: fold BN (torch) -> build full.onnx -> read its weights back (pruner.load_full_graph) and
derive every other graph ONNX -> ONNX -> check each (onnx.checker full_check, TensorRT op
allowlist) -> verify each with ONNX Runtime against the PyTorch reference on fresh random inputs
and on real images -> write into a temp dir beside `out` and rename it onto `out` only when every
graph is within tolerance, so a failed export leaves no partial directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._io import sha256_file
from ..artifact import save_manifest
from ..errors import CodedResNeXtError
from .builder import GraphSpec, build_graph
from .counting import (
    FLOPS_DEFINITION,
    PARAMS_DEFINITION,
    count_flops,
    count_initializer_elements,
    count_params,
)
from .layout import analytic_params, class_indices
from .meta import exits_info, graph_metadata, preprocessing
from .ops import check_graph
from .pruner import FullGraph, derive, load_full_graph
from .specs import full_spec, multi_exit_spec, path_spec, reject_specs, segment_specs
from .verify import compare, ort_session

DEFAULT_TOLERANCE = 1e-4
DEFAULT_FP16_TOLERANCE = 5e-2  # abs on logits/scores for FP16 graphs vs the float32 PyTorch reference
REL_ERROR_DEFINITION = "max_abs / max(max |reference|, 1e-6) per output (relative to the output's scale)"


@dataclass
class PlannedGraph:
    name: str
    spec: GraphSpec
    extra: dict


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def plan_graphs(
    cfg,
    *,
    classes: str | Sequence[str] | None = None,
    subsets: Sequence[Sequence[str]] = (),
    multi_exit: bool = False,
    segments: bool | Sequence[int] = False,
    masked: bool = False,
    reject_block: int | None = None,
    uint8: bool = False,
    fp16: bool = False,
) -> list[PlannedGraph]:
    """Which graphs an export writes (names are file stems), in a fixed order."""
    kw = {"uint8": uint8}
    plan = [PlannedGraph("full", full_spec(cfg, **kw), {})]
    if classes == "all":
        cls = list(range(cfg.num_classes))
    elif classes:
        cls = class_indices(cfg, list(classes))
    else:
        cls = []
    if (cls or subsets or masked or reject_block is not None) and not cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks (control): per-class graphs do not exist")
    if (masked or reject_block is not None) and not cls:
        cls = list(range(cfg.num_classes))
    for k in cls:
        plan.append(PlannedGraph(f"class_{_safe(cfg.class_names[k])}", path_spec(cfg, [k], **kw), {}))
    for sub in subsets:
        idx = class_indices(cfg, list(sub))
        if len(idx) < 2:
            raise CodedResNeXtError(f"--subset needs at least two classes, got {list(sub)}")
        stem = "subset_" + "__".join(_safe(cfg.class_names[k]) for k in idx)
        plan.append(PlannedGraph(stem, path_spec(cfg, idx, **kw), {}))
    if masked:
        for k in cls:
            plan.append(
                PlannedGraph(
                    f"masked_{_safe(cfg.class_names[k])}", path_spec(cfg, [k], masked=True, **kw), {}
                )
            )
    if multi_exit:
        plan.append(PlannedGraph("multi_exit", multi_exit_spec(cfg, **kw), {}))
    if segments is not False and segments is not None:
        cuts = None if segments is True else list(segments)
        specs = segment_specs(cfg, cuts, **kw)
        names = [f"segment{i}" for i in range(len(specs))]
        for i, sp in enumerate(specs):
            plan.append(
                PlannedGraph(
                    names[i],
                    sp,
                    {
                        "segment": {
                            "index": i,
                            "of": len(specs),
                            "blocks": [sp.start, (sp.stop or len(sp.keep)) - 1],
                            "next": names[i + 1] if i + 1 < len(specs) else None,
                        }
                    },
                )
            )
    if reject_block is not None:
        for k in cls:
            a, b = reject_specs(cfg, k, reject_block, **kw)
            base = f"reject_{_safe(cfg.class_names[k])}"
            info = {
                "class": cfg.class_names[k],
                "block": reject_block,
                "exit": cfg.coded_blocks.index(reject_block),
                "a": f"{base}_a",
                "b": f"{base}_b",
            }
            plan.append(PlannedGraph(f"{base}_a", a, {"reject": {**info, "part": "a"}}))
            plan.append(PlannedGraph(f"{base}_b", b, {"reject": {**info, "part": "b"}}))
    if fp16:
        plan += [PlannedGraph(f"{p.name}_fp16", replace(p.spec, fp16=True), dict(p.extra)) for p in plan]
    return plan


def _io_specs(model) -> tuple[list[dict], list[dict]]:
    from onnx import helper

    def spec(v) -> dict:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape}

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def _preprocess(frames: np.ndarray, cfg) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) normalised, as the data pipeline does."""
    x = frames.astype(np.float32) / 255.0
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def default_images_path() -> Path:
    shared = os.environ.get("CODEDRESNEXT_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return root / "datasets" / "cifar10-jpeg.tar.gz"


def _few_from_tree(path: Path, count: int) -> np.ndarray:
    """Decode only `count` test images (round-robin over classes, sorted names) of an image tree."""
    from PIL import Image

    from ..data import IMAGE_EXTS, extract_archive

    root = extract_archive(path) if path.is_file() else path
    split = next(
        (p for p in (root / "test", *(d / "test" for d in root.iterdir() if d.is_dir())) if p.is_dir()), None
    )
    if split is None:
        raise CodedResNeXtError(f"{path} has no test/<class>/ images; pass --images FILE.npz instead")
    per_class = [
        sorted(f for f in c.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        for c in sorted(d for d in split.iterdir() if d.is_dir())
    ]
    files = [fs[i] for i in range(count) for fs in per_class if i < len(fs)][:count]
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return np.stack(out)


def load_real_images(source, size: int, count: int = 16) -> tuple[np.ndarray | None, str]:
    """(uint8 (n, size, size, 3) or None, description). source: .npz / .npy / image tree / .tar.gz."""
    if source is None:
        path = default_images_path()
        if not path.is_file():
            return None, f"none: {path} not found (pass --images)"
    else:
        path = Path(source)
        if not path.exists():
            raise CodedResNeXtError(
                f"--images {path} does not exist; give a .npz/.npy of uint8 NHWC images or an image tree"
            )
    if path.suffix == ".npz":
        from ..data import load_npz_images

        imgs = load_npz_images(path).images[:count]
    elif path.suffix == ".npy":
        imgs = np.load(path)[:count]
    else:
        imgs = _few_from_tree(path, count)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or len(imgs) == 0:
        raise CodedResNeXtError(f"images from {path} have shape {imgs.shape}; expected (n, H, W, 3) uint8")
    imgs = np.asarray(imgs, np.uint8)
    if imgs.shape[1:3] != (size, size):
        from PIL import Image

        imgs = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in imgs])
    return imgs, f"{len(imgs)} real images from {path}"


def _resolve_model(checkpoint, preset, seed, model):
    import torch

    from ..checkpoint import load_checkpoint
    from ..model import create_model

    if sum(x is not None for x in (checkpoint, preset, model)) != 1:
        raise CodedResNeXtError("give exactly one of a checkpoint path or --preset")
    if checkpoint is not None:
        m, _ = load_checkpoint(checkpoint)
        return m.eval(), Path(checkpoint).resolve(), False
    if preset is not None:
        torch.manual_seed(seed)
        return create_model(preset).eval(), None, True
    return model.eval(), None, True


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise CodedResNeXtError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CodedResNeXtError(f"--out {out} is not empty; remove it or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise CodedResNeXtError(f"cannot write to {out.parent}: {e}; choose a writable --out") from e


def export_graphs(
    *,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    preset: str | None = None,
    model=None,
    seed: int = 0,
    classes: str | Sequence[str] | None = None,
    subsets: Sequence[Sequence[str]] = (),
    multi_exit: bool = False,
    segments: bool | Sequence[int] = False,
    masked: bool = False,
    reject_block: int | None = None,
    uint8: bool = False,
    fp16: bool = False,
    opset: int = 17,
    tolerance: float = DEFAULT_TOLERANCE,
    fp16_tolerance: float = DEFAULT_FP16_TOLERANCE,
    images: str | os.PathLike | None = None,
    verify: bool = True,
    batch: int = 4,
    image_count: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    int8=None,
) -> dict:
    """Export and verify graphs into `out`; returns the manifest. See the module docstring.

    Exactly one of checkpoint / preset (random weights, seeded) / model (an in-memory CodedResNeXt,
    e.g. in tests) is the source. classes: "all" or class names -> one binary graph per class;
    subsets: lists of class names -> one graph each; segments: True for the default cuts or block
    indices to cut after; reject_block: block index for early-reject pairs (classes default to all).
    batch / image_count: fresh random inputs and real images per verification (0 images: skip those).
    int8: an `int8.Int8Options` (calibration data, method, precisions) adds INT8 twins of every
    fp32 graph (export/int8.py, export/quantize.py).
    """
    import torch
    from tqdm import tqdm

    from ..checkpoint import save_checkpoint
    from .fold import fold_weights

    out = Path(out)
    net, ckpt_path, untrained = _resolve_model(checkpoint, preset, seed, model)
    cfg = net.cfg
    plan = plan_graphs(
        cfg,
        classes=classes,
        subsets=subsets,
        multi_exit=multi_exit,
        segments=segments,
        masked=masked,
        reject_block=reject_block,
        uint8=uint8,
        fp16=fp16,
    )
    if not verify:
        real, real_desc = None, "not verified"
    elif image_count <= 0:
        real, real_desc = None, "none: 0 real images asked for"
    else:
        real, real_desc = load_real_images(images, cfg.input_size, image_count)
    int8_data = None
    if int8 is not None:  # before anything is written: a bad --calibration fails here
        from .int8 import load_int8_data

        int8_data = load_int8_data(int8, cfg)
    tmp = _prepare_out(out, overwrite)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference batches are small; threads only contend on small hosts
    try:
        save_checkpoint(tmp / "source.pt", net, untrained=untrained)
        source_sha = sha256_file(tmp / "source.pt")
        ckpt_sha = sha256_file(ckpt_path) if ckpt_path else source_sha
        # full graph from folded weights; every other graph is derived from full.onnx's weights
        fspec = plan[0].spec
        fmeta = graph_metadata(cfg, fspec, checkpoint_sha256=ckpt_sha, untrained=untrained, opset=opset)
        full_model = build_graph(
            cfg, fold_weights(net), fspec, metadata=fmeta, opset=opset, graph_name="codedresnext_full"
        )
        fg: FullGraph = load_full_graph(full_model)
        refs = {}
        if verify:
            rng = np.random.default_rng(seed + 12345)
            S = cfg.input_size
            if uint8:
                rand_in = rng.integers(0, 256, (batch, S, S, 3), dtype=np.uint8)
                rand_x = _preprocess(rand_in, cfg)
            else:
                rand_x = rng.standard_normal((batch, 3, S, S)).astype(np.float32)
                rand_in = rand_x
            from .reference import Reference

            refs["random"] = (Reference(net, rand_x), rand_in)
            if real is not None:
                real_x = _preprocess(real, cfg)
                refs["images"] = (Reference(net, real_x), real if uint8 else real_x)
        entries, failures = [], []
        for pg in tqdm(plan, desc="export", unit="graph", disable=not progress):
            model_proto = full_model if pg.name == "full" else derive(fg, pg.spec, opset=opset)
            data = model_proto.SerializeToString()
            inferred = check_graph(model_proto, data)
            (tmp / f"{pg.name}.onnx").write_bytes(data)
            entry = _entry(cfg, pg, model_proto, data, inferred)
            if verify:
                tol = fp16_tolerance if pg.spec.fp16 else tolerance
                sess = ort_session(data)
                ver = {"tolerance": tol}
                for key, (ref, graph_in) in refs.items():
                    feed, expected = ref(pg.spec)
                    if pg.spec.start == 0:
                        feed = graph_in
                    res = compare(
                        dict(zip(expected, sess.run(list(expected), {sess.get_inputs()[0].name: feed}))),
                        expected,
                        tol,
                    )
                    ver[key] = res
                ver["max_abs"] = max(ver[k]["max_abs"] for k in refs)  # over random and images
                ver["max_rel"] = max(ver[k]["max_rel"] for k in refs)
                ver["images"] = ver.get("images") or {"skipped": real_desc}
                ver["passed"] = all(v.get("passed", True) for v in ver.values() if isinstance(v, dict))
                entry["verification"] = ver
                if not ver["passed"]:
                    failures.append(
                        f"{pg.name}: max_abs {max(ver[k]['max_abs'] for k in refs):.3g} > {tol:g}"
                    )
            entries.append(entry)
        if failures:
            raise CodedResNeXtError(
                "verification against PyTorch failed (nothing written): "
                + "; ".join(failures)
                + ". Check the checkpoint, or raise --tolerance if the model's logits are very large."
            )
        manifest = _manifest(
            cfg,
            net,
            entries,
            plan,
            ckpt_path=ckpt_path,
            ckpt_sha=ckpt_sha,
            source_sha=source_sha,
            untrained=untrained,
            uint8=uint8,
            opset=opset,
            tolerance=tolerance,
            fp16_tolerance=fp16_tolerance,
            real_desc=real_desc,
            verify=verify,
            batch=batch,
        )
        if int8 is not None:
            from .int8 import add_int8_twins

            add_int8_twins(tmp, manifest, full_model, int8_data, int8, progress=progress)
        save_manifest(tmp, manifest)
        _commit(tmp, out)
        return manifest
    finally:
        torch.set_num_threads(threads)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished temp dir (old content moved aside first, then deleted)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _entry(cfg, pg: PlannedGraph, model, data: bytes, inferred) -> dict:
    spec = pg.spec
    ins, outs = _io_specs(model)
    fl = count_flops(model, inferred)
    params = count_params(model)
    computed = spec.keep if not (spec.masked or spec.reject) else None
    entry = {
        "name": pg.name,
        "file": f"{pg.name}.onnx",
        "kind": spec.kind,
        "classes": [cfg.class_names[k] for k in spec.rows],
        "class_indices": list(spec.rows),
        "precision": "fp16" if spec.fp16 else "fp32",
        "params": params,
        "initializer_elements": count_initializer_elements(model),
        "flops": fl["flops"],
        "macs": fl["macs"],
        "inputs": ins,
        "outputs": outs,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "blocks": [spec.start, (spec.stop or len(spec.keep)) - 1],
        "exits": exits_info(cfg, replace(spec)),
        **pg.extra,
    }
    if computed is not None and spec.start == 0 and spec.stop is None:
        entry["analytic_params"] = analytic_params(cfg, computed, len(spec.rows))
    return entry


def _manifest(
    cfg,
    net,
    entries,
    plan,
    *,
    ckpt_path,
    ckpt_sha,
    source_sha,
    untrained,
    uint8,
    opset,
    tolerance,
    fp16_tolerance,
    real_desc,
    verify,
    batch,
) -> dict:
    from ..model import count_parameters

    seg = [p.name for p in plan if p.spec.kind == "segment" and not p.spec.fp16]
    rej = [
        p.extra["reject"]
        for p in plan
        if "reject" in p.extra and p.extra["reject"]["part"] == "a" and not p.spec.fp16
    ]
    return {
        "model": {
            "preset": cfg.name,
            "num_classes": cfg.num_classes,
            "class_names": list(cfg.class_names),
            "params": count_parameters(net),
            "coded_blocks": cfg.coded_blocks,
            "config": cfg.to_dict(),
        },
        "preprocessing": preprocessing(cfg, uint8),
        "opset": opset,
        "untrained": untrained,
        "checkpoint": {
            "path": str(ckpt_path) if ckpt_path else None,
            "sha256": ckpt_sha,
            "source": "source.pt",
            "source_sha256": source_sha,
        },
        "definitions": {
            "params": PARAMS_DEFINITION,
            "flops": FLOPS_DEFINITION,
            "max_rel": REL_ERROR_DEFINITION,
            "pass": "max_abs <= tolerance on logits/scores/energies/distances; features: "
            "max_abs <= tolerance * max(1, max |ref|)",
        },
        "verification": {
            "enabled": verify,
            "tolerance": tolerance,
            "fp16_tolerance": fp16_tolerance,
            "random": f"{batch} fresh random inputs (seeded), "
            + ("uint8 frames" if uint8 else "standard normal images"),
            "images": real_desc,
            "reference": "PyTorch CodedBlock.forward with the graph's kept branches zeroed "
            "(= model(x, keep_classes=...)), eval mode, float32",
        },
        "segments": {"order": seg} if seg else None,
        "reject": rej or None,
        "graphs": entries,
    }
