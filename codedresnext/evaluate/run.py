"""`codedresnext evaluate`: every number of the report from one checkpoint, then the files.

Cost (why the defaults): the class paths cost one pass per class over every image set, so the
threshold-fitting training subset defaults to 2,000 images (200 per CIFAR-10 class) and the
removal study to 2,000 test images; the test set itself is used whole unless --limit is given.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import artifact
from .._io import sha256_file, write_bytes, write_json, write_text
from ..checkpoint import load_checkpoint
from ..data import ArrayDataset, load_dataset, load_npz_images
from ..errors import CodedResNeXtError, DataError
from ..model import early_decode
from ..runtime.bench.accuracy import graph_accuracy
from ..runtime.thresholds.detector import write_thresholds
from . import plots
from .binary import detector_metrics, summarise
from .energy import codeword_agreement, mean_energy_per_class
from .graphs import check_same_checkpoint, class_graphs, onnx_class_logits
from .inference import run_passes
from .removal import removal_curves
from .report import html_report, markdown
from .sampling import stratified_subset


@dataclass
class EvalConfig:
    checkpoint: str
    data: str
    out: str
    graphs: str | None = None  # export directory: detector logits from its class graphs
    precision: str = "fp32"  # which of its class graphs (fp32, fp16, int8, int8-cpu twins)
    ood: str | None = None  # .npz (load_npz_images) or a dataset path (its test split)
    removal_block: int = -1  # coded block index (counting coded blocks only); -1 = last
    limit: int | None = None  # stratified test subset
    train_limit: int | None = 2000  # stratified training subset for the thresholds; None = all
    removal_limit: int | None = 2000  # stratified test subset for the removal study; None = all
    removal_draws: int = 3
    positive_fraction: float = 0.1
    flip_tta: bool = False  # full-model accuracy only; detectors are scored as they ship
    seed: int = 0
    batch_size: int = 250
    download: bool = False
    write_thresholds: bool = True  # into the --graphs export
    check_samples: int = 200  # test images on which ONNX is compared with the PyTorch masked model
    progress: bool = True


def _ood(path: str, size: tuple[int, ...]) -> ArrayDataset:
    ds = load_npz_images(path) if str(path).endswith(".npz") else load_dataset(path, "test")
    if ds.images.shape[1:] != size:
        raise DataError(
            f"OOD images are {ds.images.shape[1:]} but the model's test images are {size}; "
            "pass an OOD set of the same image size"
        )
    return ds


def _check_classes(ds: ArrayDataset, names: tuple[str, ...], what: str) -> None:
    if len(ds.class_names) != len(names):
        raise DataError(
            f"{what} has {len(ds.class_names)} classes but the checkpoint has {len(names)}; "
            "pass the dataset the model was trained on"
        )
    if tuple(ds.class_names) != tuple(names):
        raise DataError(
            f"{what} classes {list(ds.class_names)[:5]}... differ from the checkpoint's "
            f"{list(names)[:5]}...; pass the dataset the model was trained on"
        )


def _load_model(cfg: EvalConfig):
    model, _ = load_checkpoint(cfg.checkpoint)
    model.eval().to(memory_format=torch.channels_last)
    n_coded = len(model.coded_blocks)
    if n_coded and not -n_coded <= cfg.removal_block < n_coded:
        raise CodedResNeXtError(
            f"removal_block {cfg.removal_block} out of range: the model has {n_coded} "
            f"coded blocks (0..{n_coded - 1}, or -1 for the last)"
        )
    return model


def _load_sets(
    cfg: EvalConfig, names: tuple[str, ...]
) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset | None]:
    """Stratified test and training subsets (checked against the model's classes), and the OOD set."""
    test = load_dataset(cfg.data, "test", download=cfg.download)
    _check_classes(test, names, f"{cfg.data} (test)")
    test = test.subset(stratified_subset(test.labels, cfg.limit, cfg.seed))
    train = load_dataset(cfg.data, "train", download=cfg.download)
    _check_classes(train, names, f"{cfg.data} (train)")
    train = train.subset(stratified_subset(train.labels, cfg.train_limit, cfg.seed + 1))
    ood = _ood(cfg.ood, test.images.shape[1:]) if cfg.ood else None
    return test, train, ood


def _full_model_metrics(model, res: dict, test: ArrayDataset, cfg: EvalConfig) -> tuple[dict, list]:
    """Accuracy, early-decoder (and exit-head) accuracy per coded block and the energy study;
    (metrics, mean energies)."""
    m: dict = {"accuracy": float(np.mean(res["logits"].argmax(1) == test.labels))}
    if cfg.flip_tta:
        m["accuracy_no_tta"] = float(np.mean(res["logits_plain"].argmax(1) == test.labels))
    coded = model.coded_blocks
    words = [model.blocks[b].codewords.cpu() for b in coded]
    m["early_decoder_blocks"] = coded
    m["early_decoder_accuracy"] = [
        float((early_decode(torch.from_numpy(e), w).argmin(1).numpy() == test.labels).mean())
        for e, w in zip(res["energies"], words)
    ]
    pred = res.get("exit_head_predictions")
    if pred is not None:  # what the early exits score with (exit_heads.py), from the same pass; no flip
        m["exit_head_accuracy"] = [
            float((pred[b] == test.labels).mean()) if b in pred else None for b in coded
        ]
    mean_e = [mean_energy_per_class(e, test.labels, model.cfg.num_classes) for e in res["energies"]]
    m["energy"] = {
        "blocks": coded,
        "codeword_agreement": [codeword_agreement(e, w.numpy()) for e, w in zip(mean_e, words)],
        "mean_energy": [np.round(e, 5).tolist() for e in mean_e],
    }
    return m, mean_e


def _detector_logits(model, cfg: EvalConfig, res: dict, test, train, ood, kw: dict) -> tuple[dict, dict]:
    """{set: (M, K) class-path logits} from the masked PyTorch model, or (--graphs) from the shipped
    class graphs through runtime.Detector, checked against PyTorch on `check_samples` test images."""
    if cfg.graphs is None:
        binary = {"test": res["binary"]}
        binary["train"] = run_passes(model, train, full=False, desc="train subset", **kw)["binary"]
        if ood is not None:
            binary["ood"] = run_passes(model, ood, full=False, desc="OOD", **kw)["binary"]
        return binary, {"detector_source": "PyTorch masked model"}
    graphs = class_graphs(cfg.graphs, tuple(model.cfg.class_names), precision=cfg.precision)
    check_same_checkpoint(next(iter(graphs.values())), cfg.checkpoint)
    sets = {"train": train.images, "test": test.images}
    if ood is not None:
        sets["ood"] = ood.images
    binary = onnx_class_logits(graphs, sets, **kw)
    n = min(cfg.check_samples, len(test))
    ref = run_passes(model, test.subset(np.arange(n)), full=False, **kw)["binary"]
    return binary, {
        "onnx_max_abs_diff_vs_torch": float(np.abs(ref - binary["test"][:n]).max()),
        "detector_source": f"ONNX Runtime (runtime.Detector), {cfg.precision} class graphs in {cfg.graphs}",
        "detector_precision": cfg.precision,
    }


def _graph_full_accuracy(cfg: EvalConfig, test: ArrayDataset) -> dict | None:
    """Top-1 of the export's full graph at the detectors' precision vs its fp32 twin, on the whole
    test set: the accuracy a user of that precision gets (the manifest's figure is on a sample)."""
    if cfg.graphs is None or cfg.precision == artifact.FP32:
        return None
    manifest = artifact.load_manifest(cfg.graphs)
    twin = manifest.first(artifact.GraphKind.FULL, precision=cfg.precision)
    ref = manifest.first(artifact.GraphKind.FULL)
    if twin is None or ref is None:
        return None
    acc = graph_accuracy(cfg.graphs, twin.name, test.images, test.labels, reference=ref.name, threads=None)
    return {
        "graph": twin.name,
        "precision": cfg.precision,
        "images": acc["images"],
        "top1": acc["top1"],
        "reference": ref.name,
        "reference_top1": acc["reference"]["top1"],
        "loss_points": 100 * (acc["reference"]["top1"] - acc["top1"]),
        "top1_agreement": acc["top1_agreement"],
    }


def compute(cfg: EvalConfig) -> tuple[dict, dict]:
    """All metrics (JSON-ready) and the arrays the figures need: full model, detectors, removal."""
    t0 = time.time()
    model = _load_model(cfg)
    names = tuple(model.cfg.class_names)
    test, train, ood = _load_sets(cfg, names)
    kw = {"batch_size": cfg.batch_size, "progress": cfg.progress}
    res = run_passes(
        model, test, full=True, class_paths=cfg.graphs is None, flip_tta=cfg.flip_tta, desc="test", **kw
    )
    m: dict = {
        "checkpoint": str(cfg.checkpoint),
        "checkpoint_sha256": sha256_file(cfg.checkpoint),
        "model": model.cfg.name,
        "classes": list(names),
        "data": str(cfg.data),
        "ood": cfg.ood,
        "graphs": cfg.graphs,
        "test_samples": len(test),
        "train_samples": len(train),
        "ood_samples": len(ood) if ood is not None else 0,
        "flip_tta": cfg.flip_tta,
    }
    full_metrics, mean_e = _full_model_metrics(model, res, test, cfg)
    m.update(full_metrics)
    binary, source = _detector_logits(model, cfg, res, test, train, ood, kw)
    m.update(source)
    graph_full = _graph_full_accuracy(cfg, test)
    if graph_full is not None:
        m["graph_full_accuracy"] = graph_full
    rows = detector_metrics(
        names,
        binary["train"],
        train.labels,
        binary["test"],
        test.labels,
        binary.get("ood"),
        positive_fraction=cfg.positive_fraction,
        seed=cfg.seed,
    )
    m.update(summarise(rows))
    m["per_class"] = rows
    if model.coded_blocks:
        rem_set = test.subset(stratified_subset(test.labels, cfg.removal_limit, cfg.seed + 2))
        m["removal"] = removal_curves(
            model, rem_set, coded_index=cfg.removal_block, draws=cfg.removal_draws, seed=cfg.seed, **kw
        )
    m["settings"] = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("progress",)}
    m["seconds"] = round(time.time() - t0, 1)
    arrays = {
        "binary": binary,
        "test_labels": test.labels,
        "mean_energy": mean_e,
        "codewords": [model.blocks[b].codewords.cpu().numpy() for b in model.coded_blocks],
    }
    return m, arrays


def write_outputs(out: str | Path, m: dict, arrays: dict) -> dict[str, bytes]:
    """metrics.json, the PNG figures, summary.md and report.html (each written atomically)."""
    out = Path(out)
    b = arrays["binary"]
    pngs = {
        "pr_scatter.png": plots.pr_scatter(m["per_class"]),
        "logit_histograms.png": plots.logit_histograms(
            m["per_class"], b["test"], arrays["test_labels"], b.get("ood")
        ),
    }
    if m["early_decoder_accuracy"]:
        pngs["early_decoders.png"] = plots.early_decoders(
            m["early_decoder_accuracy"], m["early_decoder_blocks"], m["accuracy"], m.get("exit_head_accuracy")
        )
        pngs["energy_heatmap.png"] = plots.energy_heatmap(
            arrays["mean_energy"], arrays["codewords"], m["early_decoder_blocks"], tuple(m["classes"])
        )
    if m.get("removal"):
        pngs["removal.png"] = plots.removal(m["removal"])
    for name, data in pngs.items():
        write_bytes(out / name, data)
    write_json(out / "metrics.json", artifact.json_ready(m))  # strict JSON: undefined figures are null
    write_text(out / "summary.md", markdown(m, list(pngs)))
    write_text(out / "report.html", html_report(m, pngs))
    return pngs


def evaluate(cfg: EvalConfig) -> dict:
    """Compute, write DIR/{metrics.json, summary.md, report.html, *.png}; store the thresholds in
    the --graphs export (manifest + graph metadata) so the runtime's detectors use them."""
    m, arrays = compute(cfg)
    if cfg.graphs and cfg.write_thresholds:
        thr = {r["class"]: r["threshold"] for r in m["per_class"]}
        src = {
            "criterion": "max F1 on training samples",
            "train_samples": m["train_samples"],
            "checkpoint_sha256": m["checkpoint_sha256"],
            "data": m["data"],
        }
        # fp32 thresholds go to every twin; another precision's, fitted on its own scores, to its graphs
        only = None if cfg.precision == "fp32" else cfg.precision
        m["thresholds_written_to"] = write_thresholds(cfg.graphs, thr, source=src, precision=only)
    write_outputs(cfg.out, m, arrays)
    return m
