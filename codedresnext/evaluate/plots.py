"""The report's figures as PNG bytes (matplotlib imported lazily, Agg backend, no display)."""

from __future__ import annotations

import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def pr_scatter(per_class: list[dict]) -> bytes:
    """Precision vs recall of every class's detector: test set and with OOD negatives."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    r = [c["recall"] for c in per_class]
    p = [c["precision"] for c in per_class]
    ax.scatter(r, p, label="test (in-distribution negatives)", color="tab:blue", zorder=3)
    vals = r + p
    if per_class and "ood_recall" in per_class[0]:
        ro = [c["ood_recall"] for c in per_class]
        po = [c["ood_precision"] for c in per_class]
        ax.scatter(ro, po, marker="x", label="OOD negatives", color="tab:red", zorder=3)
        vals += ro + po
    if len(per_class) <= 20:
        for c, x, y in zip(per_class, r, p):
            ax.annotate(c["class"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo = max(0.0, min([0.5, *vals]) - 0.05)
    ax.set(
        xlim=(lo, 1.01),
        ylim=(lo, 1.01),
        xlabel="recall",
        ylabel="precision",
        title="Per-class binary detectors (threshold: max F1 on train)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    return _png(fig)


def _pick_classes(per_class: list[dict], limit: int = 12) -> list[int]:
    if len(per_class) <= limit:
        return list(range(len(per_class)))
    order = np.argsort([c["f1"] for c in per_class], kind="stable")
    return sorted({*order[: limit // 2].tolist(), *order[-(limit // 2) :].tolist()})


def logit_histograms(
    per_class: list[dict], test_logits: np.ndarray, test_labels: np.ndarray, ood_logits: np.ndarray | None
) -> bytes:
    """Per class: detector logits of positives, in-distribution negatives and OOD images."""
    plt = _plt()
    picks = _pick_classes(per_class)
    cols = min(4, len(picks))
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(picks) :]:
        ax.axis("off")
    for ax, k in zip(axes.ravel(), picks):
        c = per_class[k]
        pos = test_logits[test_labels == k, k]
        neg = test_logits[test_labels != k, k]
        sets = [(neg, "negatives", "tab:gray"), (pos, "positives", "tab:blue")]
        if ood_logits is not None:
            sets.append((ood_logits[:, k], "OOD", "tab:red"))
        lo = min(s.min() for s, _, _ in sets)
        hi = max(s.max() for s, _, _ in sets)
        bins = np.linspace(lo, hi, 40)
        for s, label, color in sets:
            ax.hist(s, bins=bins, density=True, alpha=0.45, label=label, color=color)
        ax.axvline(c["threshold"], color="k", lw=1, ls="--")
        ax.set_title(f"{c['class']} (F1 {c['f1']:.2f})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Detector logits (dashed: threshold)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def early_decoders(
    accuracy: list[float], blocks: list[int], full_accuracy: float, heads: list[float | None] | None = None
) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    x = np.arange(len(accuracy))
    ax.plot(x, accuracy, "o-", label="early decoder (energies vs codewords)")
    if heads:
        y = [np.nan if a is None else a for a in heads]
        ax.plot(x, y, "s-", label="exit head (fit-exits; what early exit scores with)")
    ax.axhline(full_accuracy, color="k", ls="--", lw=1, label=f"full model {full_accuracy:.3f}")
    ax.set_xticks(x, [f"coded {j}\n(block {b})" for j, b in enumerate(blocks)], fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1), title="Early decoding per coded block")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def removal(rem: dict) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    k = np.asarray(rem["k"])
    for kind, color in (("active", "tab:red"), ("inactive", "tab:green")):
        acc = np.array([np.nan if a is None else a for a in rem[kind]], float)
        draws = rem[f"{kind}_draws"]
        lo = np.array([np.nan if d is None else min(d) for d in draws[1:]], float)
        hi = np.array([np.nan if d is None else max(d) for d in draws[1:]], float)
        ax.plot(k, acc, "o-", color=color, label=f"{kind} branches removed")
        ax.fill_between(k[1:], lo, hi, color=color, alpha=0.15)
    ax.set_xticks(k)
    ax.set(
        xlabel="branches removed (k)",
        ylabel="accuracy",
        ylim=(0, 1),
        title=f"Branch removal in coded block {rem['coded_block']} (block {rem['block_index']})",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def energy_heatmap(
    mean_energy: list[np.ndarray],
    codewords: list[np.ndarray],
    blocks: list[int],
    class_names: tuple[str, ...],
) -> bytes:
    """r * mean normalised energy per (class, branch); dots mark the codeword's ones."""
    plt = _plt()
    n = len(mean_energy)
    K = len(class_names)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 1, max(2.5, 0.22 * min(K, 100) + 1.2)), squeeze=False)
    im = None
    for ax, e, w, b in zip(axes[0], mean_energy, codewords, blocks):
        w = np.asarray(w)
        r = w[0].sum() / w.shape[1]
        im = ax.imshow(r * e, vmin=0, vmax=1.2, cmap="viridis", aspect="auto", interpolation="nearest")
        yy, xx = np.nonzero(w)
        ax.scatter(xx, yy, s=6 if K > 20 else 14, c="white", marker="o", linewidths=0)
        ax.set_title(f"block {b} ({int(w[0].sum())}/{w.shape[1]})", fontsize=9)
        ax.set_xlabel("branch", fontsize=8)
        ax.tick_params(labelsize=7)
        if K <= 20:
            ax.set_yticks(range(K), class_names if ax is axes[0][0] else [""] * K)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="r x mean energy (codeword 1 -> 1)")
    fig.suptitle("Mean branch energy per class; white dots: codeword ones", fontsize=10)
    return _png(fig)
