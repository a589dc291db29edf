"""`codedresnext calibrate`'s report: calibration.json, the curves as PNG, calibration.md and a
self-contained calibration.html (PNG embedded). matplotlib is imported lazily; without it the
figures are skipped and the JSON says so."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from ..._io import write_bytes, write_json, write_text

EXIT_CURVE = "exit_curve.png"
REJECT_BLOCKS = "reject_blocks.png"


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    fig.clf()
    return buf.getvalue()


def exit_curve_png(ee: dict) -> bytes | None:
    """Compute saved vs accuracy loss: the joint search at each budget, on both halves."""
    plt = _plt()
    if plt is None or not ee.get("curve"):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for half, style in (("calibration", "o-"), ("evaluation", "s--")):
        pts = [p[half] for p in ee["curve"] if half in p]
        ax.plot(
            [p["accuracy_loss_points"] for p in pts],
            [100 * p["compute_saved"] for p in pts],
            style,
            label=f"joint search, {half} half",
        )
    g = ee["search"]["greedy_baseline"]["evaluation"]
    ax.plot(
        [g["accuracy_loss_points"]], [100 * g["compute_saved"]], "kx", ms=10, label="greedy baseline (eval)"
    )
    e = ee["evaluation"]
    ax.plot([e["accuracy_loss_points"]], [100 * e["compute_saved"]], "r*", ms=14, label="chosen (eval)")
    ax.axvline(ee["max_accuracy_loss"], color="grey", lw=0.8, ls=":", label="budget")
    ax.set_xlabel("accuracy loss vs the full graph (points)")
    ax.set_ylabel("compute saved (% of the full graph's FLOPs)")
    ax.set_title("early exit: compute saved vs accuracy loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def reject_blocks_png(er: dict) -> bytes | None:
    """Per coded block: negatives stopped and compute on negatives (fraction of the class graph)."""
    plt = _plt()
    blocks = (er or {}).get("blocks")
    if plt is None or not blocks:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [b["block"] for b in blocks]
    ax.plot(xs, [100 * b["negatives_stopped"] for b in blocks], "o-", label="negatives stopped (eval)")
    ax.plot(
        xs,
        [100 * b["negative_compute_vs_class_graph"] for b in blocks],
        "s-",
        label="compute on negatives (% of class graph)",
    )
    fl = er.get("trunk_floor")
    if fl:
        ax.axhline(
            100 * fl["fraction_of_class_graph"], color="k", ls=":", label="trunk floor (stem + uncoded)"
        )
    ax.axvline(er["chosen_block"], color="r", lw=0.8, ls="--", label=f"chosen block {er['chosen_block']}")
    ax.set_xlabel("reject block (block index)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(f"early reject at <= {er['max_recall_loss']} point recall loss (mean over classes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _confidence_row(ee: dict) -> str:
    c = ee.get("confidence") or {}
    rivals = ", ".join(
        f"{r} {100 * v['calibration']['compute_saved']:.1f}%" for r, v in (c.get("candidates") or {}).items()
    )
    return f"{c.get('chosen', 'max')}" + (f" (calibration half saved: {rivals})" if rivals else "")


def _rows(summary: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    ee = summary.get("early_exit")
    if ee:
        e, g = ee["evaluation"], ee["search"]["greedy_baseline"]["evaluation"]
        rows += [
            ("early exit: search", ee["search"]["method"]),
            ("early exit: confidence (chosen on the calibration half)", _confidence_row(ee)),
            (
                "early exit: compute saved / accuracy loss (evaluation half)",
                f"{100 * e['compute_saved']:.1f}% / {e['accuracy_loss_points']:.2f} pt",
            ),
            (
                "greedy baseline, same budget (evaluation half)",
                f"{100 * g['compute_saved']:.1f}% / {g['accuracy_loss_points']:.2f} pt",
            ),
            (
                "exits taken (evaluation, last = none)",
                ", ".join(f"{100 * f:.1f}%" for f in e["exit_fractions"]),
            ),
            ("exits worth keeping (block indices)", str(ee["exit_rule"]["recommended_cuts"])),
        ]
    er = summary.get("early_reject_blocks")
    if er:
        best = next(b for b in er["blocks"] if b["block"] == er["chosen_block"])
        rows += [
            ("early reject: chosen block", str(er["chosen_block"])),
            ("reject score", reject_rule_label(er, best)),
            (
                "negatives stopped / recall loss (evaluation half)",
                f"{100 * best['negatives_stopped']:.1f}% / {best['recall_loss_points']:.2f} pt",
            ),
            (
                "compute on negatives vs class graph",
                f"{100 * best['negative_compute_vs_class_graph']:.1f}%",
            ),
            (
                "trunk floor (stem + uncoded blocks)",
                f"{100 * er['trunk_floor']['fraction_of_class_graph']:.1f}%",
            ),
        ]
    return rows


def reject_rule_label(er: dict, row: dict) -> str:
    """The reject score used, with the codeword distance's figures beside a learned rule's."""
    rule = (er.get("rule") or {}).get("rule", "distance")
    if rule != "learned":
        why = (er.get("rule") or {}).get("why_not_learned")
        return "codeword distance" + (f" ({why})" if why else "")
    stop, loss = row.get("distance_negatives_stopped"), row.get("distance_recall_loss_points")
    if stop is None or loss is None:
        return "learned (codeword distance: n/a)"
    return f"learned (codeword distance: {100 * stop:.1f}% / {loss:.2f} pt)"


def write_calibration_report(summary: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write the report files into `out`; returns {kind: path}."""
    out = Path(out)
    pngs = {}
    if summary.get("early_exit"):
        pngs[EXIT_CURVE] = exit_curve_png(summary["early_exit"])
    if summary.get("early_reject_blocks"):
        pngs[REJECT_BLOCKS] = reject_blocks_png(summary["early_reject_blocks"])
    pngs = {k: v for k, v in pngs.items() if v}
    paths = {
        "json": out / "calibration.json",
        "markdown": out / "calibration.md",
        "html": out / "calibration.html",
    }
    for name, data in pngs.items():
        write_bytes(out / name, data)
        paths[name] = out / name
    rows = _rows(summary)
    md = [f"# Calibration: {summary.get('directory', '')}", "", summary.get("split", ""), ""]
    md += ["| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    md += [f"![{n}]({n})" for n in pngs] + [""]
    write_text(paths["markdown"], "\n".join(md))
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>codedresnext calibration</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}</style></head><body>",
        f"<h1>Calibration: {e(str(summary.get('directory', '')))}</h1><p>{e(summary.get('split', ''))}</p>",
        "<table>" + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows) + "</table>",
    ]
    parts += [
        f"<figure><img alt='{e(n)}' src='data:image/png;base64,{base64.b64encode(d).decode()}'></figure>"
        for n, d in pngs.items()
    ]
    write_text(paths["html"], "\n".join(parts) + "</body></html>\n")
    write_json(paths["json"], {**summary, "figures": sorted(pngs)})
    return paths
