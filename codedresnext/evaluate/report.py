"""summary.md and a self-contained report.html (figures embedded as base64 PNG) from metrics."""

from __future__ import annotations

import base64
import html
import math

FIGURES = (
    ("pr_scatter.png", "Precision and recall of every class's detector"),
    ("logit_histograms.png", "Detector logits: positives, negatives and out-of-distribution images"),
    ("early_decoders.png", "Early-decoder accuracy per coded block"),
    ("removal.png", "Branch specialisation: removing active vs inactive branches"),
    ("energy_heatmap.png", "Mean branch energy per class vs the codewords"),
)


def _f(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _tables(m: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report."""
    summary = [
        ["test accuracy (full model)" + (" with flip TTA" if m.get("flip_tta") else ""), _f(m["accuracy"])],
        ["binary detectors: mean precision", _f(m.get("binary_mean_precision"))],
        ["binary detectors: mean recall", _f(m.get("binary_mean_recall"))],
        ["binary detectors: mean F1", _f(m["binary_mean_f1"])],
        ["binary detectors: mean ROC-AUC", _f(m.get("binary_mean_auc"))],
    ]
    if m.get("accuracy_no_tta") is not None:
        summary.insert(1, ["test accuracy without TTA", _f(m["accuracy_no_tta"])])
    if "ood_mean_f1" in m:
        summary += [
            [
                "with OOD negatives: mean precision / recall",
                f"{_f(m['ood_mean_precision'])} / {_f(m['ood_mean_recall'])}",
            ],
            ["with OOD negatives: mean F1 / ROC-AUC", f"{_f(m['ood_mean_f1'])} / {_f(m['ood_mean_auc'])}"],
        ]
    if m.get("graph_full_accuracy"):
        g = m["graph_full_accuracy"]
        summary.append(
            [
                f"full graph `{g['graph']}` ({g['precision']}, ONNX Runtime) vs `{g['reference']}`",
                f"{_f(g['top1'])} vs {_f(g['reference_top1'])} ({g['loss_points']:.2f} points lost)",
            ]
        )
    if m.get("early_decoder_accuracy"):
        summary.append(["last coded block's early decoder", _f(m["early_decoder_accuracy"][-1])])
    if m.get("exit_head_accuracy"):
        summary.append(["last coded block's exit head", _f(m["exit_head_accuracy"][-1])])
    summary += [
        ["detector logits computed by", m["detector_source"]],
        [
            "test / train-threshold / OOD samples",
            f"{m['test_samples']} / {m['train_samples']} / {m.get('ood_samples', 0)}",
        ],
    ]
    if m.get("onnx_max_abs_diff_vs_torch") is not None:
        summary.append(["max |ONNX - PyTorch masked| logit", f"{m['onnx_max_abs_diff_vs_torch']:.2e}"])
    tables = [("Summary", ["metric", "value"], summary)]
    ood = bool(m["per_class"]) and "ood_f1" in m["per_class"][0]
    head = ["class", "threshold", "precision", "recall", "F1", "AUC"] + (
        ["OOD precision", "OOD recall", "OOD F1", "OOD AUC"] if ood else []
    )
    rows = []
    for c in m["per_class"]:
        row = [c["class"], _f(c["threshold"], 3)] + [_f(c[k]) for k in ("precision", "recall", "f1", "auc")]
        if ood:
            row += [_f(c[f"ood_{k}"]) for k in ("precision", "recall", "f1", "auc")]
        rows.append(row)
    tables.append(("Per-class binary detectors (test set)", head, rows))
    if m.get("early_decoder_accuracy"):
        heads = m.get("exit_head_accuracy")
        rows = [
            [str(j), str(b), _f(a), _f(g)] + ([_f(heads[j])] if heads else [])
            for j, (b, a, g) in enumerate(
                zip(m["early_decoder_blocks"], m["early_decoder_accuracy"], m["energy"]["codeword_agreement"])
            )
        ]
        head = ["coded block", "block", "accuracy", "codeword agreement"] + (
            ["exit head accuracy"] if heads else []
        )
        tables.append(("Early decoders", head, rows))
    rem = m.get("removal")
    if rem:
        tables.append(
            (
                f"Branch removal, coded block {rem['coded_block']} (block {rem['block_index']}, "
                f"{rem['samples']} test images, {rem['draws']} draws)",
                ["k removed", "accuracy (active removed)", "accuracy (inactive removed)"],
                [[str(k), _f(a), _f(i)] for k, a, i in zip(rem["k"], rem["active"], rem["inactive"])],
            )
        )
    return tables


def markdown(m: dict, figures: list[str]) -> str:
    out = [
        f"# Evaluation of {m['checkpoint']}",
        "",
        f"Model `{m['model']}` ({len(m['classes'])} classes) on `{m['data']}`. "
        "Thresholds maximise F1 on training samples; precision, recall, F1 and ROC-AUC are on the "
        "test set" + (" (negatives sampled so positives are 10%)" if len(m["classes"]) > 10 else "") + ".",
        "",
    ]
    for title, head, rows in _tables(m):
        out += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    out += ["## Figures", ""] + [f"![{cap}]({name})" for name, cap in FIGURES if name in figures] + [""]
    return "\n".join(out)


def html_report(m: dict, pngs: dict[str, bytes]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>codedresnext evaluation: {e(str(m['checkpoint']))}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}"
        "figcaption{font-size:13px;color:#555}</style></head><body>",
        f"<h1>Evaluation of {e(str(m['checkpoint']))}</h1>",
        f"<p>Model <code>{e(m['model'])}</code>, {len(m['classes'])} classes, "
        f"data <code>{e(str(m['data']))}</code>. "
        "Thresholds maximise F1 on training samples; the metrics are on the test set.</p>",
    ]
    for title, head, rows in _tables(m):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for name, cap in FIGURES:
        if name in pngs:
            b64 = base64.b64encode(pngs[name]).decode()
            parts.append(
                f"<figure><img alt='{e(cap)}' src='data:image/png;base64,{b64}'>"
                f"<figcaption>{e(cap)}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)
