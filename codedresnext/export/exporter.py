"""`export_graphs`: one checkpoint (or a preset's random weights) -> verified graphs + manifest.json.

Flow (one function per step below): resolve the model -> plan the graphs (export/plan.py) ->
fold BN (torch) and build full.onnx -> read its weights back (pruner.load_full_graph) and derive
every other graph ONNX -> ONNX -> check each (onnx.checker full_check, TensorRT op allowlist) ->
verify every declared output of each with ONNX Runtime against the PyTorch reference on fresh
random inputs and on real images (export/verify.py) -> write into a temp dir beside `out` and
rename it onto `out` only when every graph is within tolerance, so a failed export leaves no
partial directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .._io import sha256_file
from .._optional import lazy
from .._paths import shared_root
from ..artifact import SOURCE_CHECKPOINT, Manifest, ManifestEntry, normalize_frames
from ..data import IMAGE_EXTS, extract_archive, load_npz_images
from ..errors import CodedResNeXtError
from .builder import build_graph
from .fold import fold_weights, head_weights
from .int8 import add_int8_twins, load_int8_data
from .meta import graph_metadata
from .ops import check_graph
from .options import DEFAULT_TOLERANCE, ExportOptions
from .plan import FULL_NAME, PlannedGraph, plan_graphs
from .pruner import FullGraph, derive, load_full_graph
from .record import REL_ERROR_DEFINITION, export_manifest, graph_entry
from .reference import Reference
from .reject_facts import pair_flops, trunk_floor
from .verify import VerifyRun, verify_graph

# torch (the [train] extra) is what an export runs on; bound lazily so the CLI's parser and the
# torch-free core import this module without it
torch = lazy("torch", why="export")
checkpoints = lazy("codedresnext.checkpoint", why="export")
models = lazy("codedresnext.model", why="export")

__all__ = ["DEFAULT_TOLERANCE", "REL_ERROR_DEFINITION", "ExportOptions", "export_graphs", "plan_graphs"]


def default_images_path() -> Path | None:
    """The offline CIFAR-10 JPEGs under $CODEDRESNEXT_SHARED (or ../shared beside a source checkout);
    None for an installed package without the variable (then pass --images)."""
    root = shared_root()
    return root / "datasets" / "cifar10-jpeg.tar.gz" if root is not None else None


def _few_from_tree(path: Path, count: int) -> np.ndarray:
    """Decode only `count` test images (round-robin over classes, sorted names) of an image tree."""
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
        if path is None:
            return None, "none: no default images outside a checkout (pass --images, or CODEDRESNEXT_SHARED)"
        if not path.is_file():
            return None, f"none: {path} not found (pass --images)"
    else:
        path = Path(source)
        if not path.exists():
            raise CodedResNeXtError(
                f"--images {path} does not exist; give a .npz/.npy of uint8 NHWC images or an image tree"
            )
    if path.suffix == ".npz":
        imgs = load_npz_images(path).images[:count]
    elif path.suffix == ".npy":
        imgs = np.load(path)[:count]
    else:
        imgs = _few_from_tree(path, count)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or len(imgs) == 0:
        raise CodedResNeXtError(f"images from {path} have shape {imgs.shape}; expected (n, H, W, 3) uint8")
    imgs = np.asarray(imgs, np.uint8)
    if imgs.shape[1:3] != (size, size):
        imgs = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in imgs])
    return imgs, f"{len(imgs)} real images from {path}"


def _resolve_model(checkpoint, preset, seed, model):
    if sum(x is not None for x in (checkpoint, preset, model)) != 1:
        raise CodedResNeXtError("give exactly one of a checkpoint path or --preset")
    if checkpoint is not None:
        m, _ = checkpoints.load_checkpoint(checkpoint)
        return m.eval(), Path(checkpoint).resolve(), False
    if preset is not None:
        torch.manual_seed(seed)
        return models.create_model(preset).eval(), None, True
    return model.eval(), None, True


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an unusable --out before any work (the model, the verification images)."""
    if out.exists() and not out.is_dir():
        raise CodedResNeXtError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CodedResNeXtError(f"--out {out} is not empty; remove it or pass --overwrite")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    _check_out(out, overwrite)  # again: it may have changed while the graphs were planned
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise CodedResNeXtError(f"cannot write to {out.parent}: {e}; choose a writable --out") from e


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """The reference batches are small; more threads only contend on small hosts."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Source:
    """Where the graphs' weights came from (recorded in every graph and in the manifest)."""

    net: object  # CodedResNeXt, eval mode
    checkpoint: Path | None
    untrained: bool
    checkpoint_sha256: str = ""
    source_sha256: str = ""


def _write_source(tmp: Path, src: _Source) -> None:
    """DIR/source.pt (the weights the graphs came from) and the sha256s the graphs record."""
    checkpoints.save_checkpoint(tmp / SOURCE_CHECKPOINT, src.net, untrained=src.untrained)
    src.source_sha256 = sha256_file(tmp / SOURCE_CHECKPOINT)
    src.checkpoint_sha256 = sha256_file(src.checkpoint) if src.checkpoint else src.source_sha256


def _build_full(src: _Source, full: PlannedGraph, opset: int):
    """full.onnx from the BN-folded weights (torch); every other graph derives from its weights."""
    cfg = src.net.cfg
    meta = graph_metadata(
        cfg, full.spec, checkpoint_sha256=src.checkpoint_sha256, untrained=src.untrained, opset=opset
    )
    return build_graph(
        cfg, fold_weights(src.net), full.spec, metadata=meta, opset=opset, graph_name="codedresnext_full"
    )


def _verify_runs(net, *, seed: int, batch: int, uint8: bool, real: np.ndarray | None) -> dict[str, VerifyRun]:
    """Fresh seeded random inputs (uint8 frames or standard normal images) and the real images."""
    cfg = net.cfg
    rng = np.random.default_rng(seed + 12345)
    S = cfg.input_size
    if uint8:
        rand_in = rng.integers(0, 256, (batch, S, S, 3), dtype=np.uint8)
        rand_x = normalize_frames(rand_in, cfg.mean, cfg.std)
    else:
        rand_x = rand_in = rng.standard_normal((batch, 3, S, S)).astype(np.float32)
    runs = {"random": VerifyRun(Reference(net, rand_x), rand_in)}
    if real is not None:
        real_x = normalize_frames(real, cfg.mean, cfg.std)
        runs["images"] = VerifyRun(Reference(net, real_x), real if uint8 else real_x)
    return runs


def _export_each(
    cfg,
    plan: list[PlannedGraph],
    full_model,
    fg: FullGraph,
    tmp: Path,
    *,
    runs: dict[str, VerifyRun] | None,
    options: ExportOptions,
    images_note: str,
) -> list[ManifestEntry]:
    """Derive, check, write and (runs given) verify each planned graph; raise listing every failure."""
    opset = options.opset
    entries, failures = [], []
    probe_flops: dict[int, dict[str, dict[str, float]]] = {}  # per class; fp16 twins share them
    for pg in tqdm(plan, desc="export", unit="graph", disable=not options.progress):
        model_proto = full_model if pg.name == FULL_NAME else derive(fg, pg.spec, opset=opset)
        data = model_proto.SerializeToString()
        inferred = check_graph(model_proto, data)
        (tmp / f"{pg.name}.onnx").write_bytes(data)
        entry = graph_entry(cfg, pg, model_proto, data, inferred)
        if entry.reject_probe is not None:  # what a pair cut at each probed block would cost
            k = pg.spec.rows[0]
            if k not in probe_flops:
                probe_flops[k] = pair_flops(fg, cfg, k, list(pg.spec.probe), opset)
            entry.reject_probe = replace(entry.reject_probe, pair_flops=probe_flops[k])
        if runs is not None:
            tol = options.fp16_tolerance if pg.spec.fp16 else options.tolerance
            entry.verification = verify_graph(pg.name, data, pg.spec, runs, tol, images_note)
            if not entry.verification.passed:
                failures.append(f"{pg.name}: max_abs {entry.verification.max_abs:.3g} > {tol:g}")
        entries.append(entry)
    if failures:
        raise CodedResNeXtError(
            "verification against PyTorch failed (nothing written): "
            + "; ".join(failures)
            + ". Check the checkpoint, or raise ExportOptions.tolerance (Python API) if the model's "
            "logits are very large."
        )
    return entries


def _real_images(verify: bool, image_count: int, images, size: int) -> tuple[np.ndarray | None, str]:
    if not verify:
        return None, "not verified"
    if image_count <= 0:
        return None, "none: 0 real images asked for"
    return load_real_images(images, size, image_count)


def export_graphs(options: ExportOptions, *, model=None) -> Manifest:
    """Export and verify the graphs `options` asks for into `options.out`; returns the manifest.

    model: an in-memory CodedResNeXt (e.g. in tests) instead of options.checkpoint / options.preset.
    See the module docstring for the flow and ExportOptions for the settings."""
    o = options
    out = Path(o.out)
    _check_out(out, o.overwrite)
    src = _Source(*_resolve_model(o.checkpoint, o.preset, o.seed, model))
    cfg = src.net.cfg
    plan = plan_graphs(cfg, o)
    real, real_desc = _real_images(o.verify, o.verify_images, o.images, cfg.input_size)
    int8_data = None
    if o.int8 is not None:  # before anything is written: a bad --int8 DATA fails here
        int8_data = load_int8_data(o.int8, cfg)
    tmp = _prepare_out(out, o.overwrite)
    try:
        with _torch_threads(1):
            _write_source(tmp, src)
            full_model = _build_full(src, plan[0], o.opset)
            fg = load_full_graph(full_model)
            fg.weights.update(head_weights(src.net))  # exits only: full.onnx does not carry them
            runs = None
            if o.verify:
                runs = _verify_runs(src.net, seed=o.seed, batch=o.verify_batch, uint8=o.uint8, real=real)
            entries = _export_each(
                cfg, plan, full_model, fg, tmp, runs=runs, options=o, images_note=real_desc
            )
        verification = {"enabled": o.verify, "tolerance": o.tolerance, "fp16_tolerance": o.fp16_tolerance}
        verification["random"] = f"{o.verify_batch} fresh random inputs (seeded), " + (
            "uint8 frames" if o.uint8 else "standard normal images"
        )
        manifest = _manifest(
            src,
            entries,
            plan,
            uint8=o.uint8,
            opset=o.opset,
            verification={**verification, "images": real_desc},
            reject_floor=trunk_floor(fg, cfg, o.opset) if cfg.coded_blocks else None,
        )
        if o.int8 is not None:
            manifest = add_int8_twins(tmp, manifest, full_model, int8_data, o.int8, progress=o.progress)
        manifest.save(tmp)
        _commit(tmp, out)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _manifest(
    src: _Source, entries, plan, *, uint8: bool, opset: int, verification: dict, reject_floor=None
) -> Manifest:
    return export_manifest(
        src.net.cfg,
        entries,
        plan,
        params=models.count_parameters(src.net),
        checkpoint={
            "path": src.checkpoint,
            "sha256": src.checkpoint_sha256,
            "source_sha256": src.source_sha256,
        },
        untrained=src.untrained,
        uint8=uint8,
        opset=opset,
        verification=verification,
        reject_floor=reject_floor,
    )


def _commit(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished temp dir (old content moved aside first, then deleted)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
