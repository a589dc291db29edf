"""Choose the INT8 calibration method by measurement (ONNX Runtime's MinMax / Percentile / Entropy).

    .venv/bin/python benchmarks/int8_calibration.py [--checkpoint models/demo/model.pt] [--test-images 10000]

For each method: `export CKPT --int8 --calibration DATA --calibration-method M` (full graph only),
i.e. ranges from a seeded sample of the training split, then top-1 accuracy of the int8 (TensorRT
form) and int8-cpu twins and their agreement with the fp32 graph on a seeded sample of the test
split, plus the calibration time. Writes benchmarks/results/int8_calibration.{json,md}; the
method with the smallest accuracy loss of the `int8` form (ties: agreement) is the default
(export/quantize.DEFAULT_METHOD).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from demo_common import RESULTS, demo_parser
from history import with_history

METHODS = [("minmax", None), ("percentile", 99.99), ("percentile", 99.999), ("entropy", None)]


def _markdown(res: dict) -> str:
    lines = [
        "# INT8 calibration method (ONNX Runtime calibrators), measured",
        "",
        f"Checkpoint {res['checkpoint']}; ranges from {res['calibration_images']} training images, "
        f"accuracy on {res['test_images']} test images of {res['data']} (seeded samples); load average "
        f"at start {res['load_average_at_start']}. Command: `{res['command']}`.",
        "",
        "| method | precision | top-1 | fp32 top-1 | loss (points) | top-1 agreement | calibration s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        for p, a in r["precisions"].items():
            lines.append(
                f"| {r['method']} | {p} | {100 * a['top1']:.2f} | {100 * a['reference']['top1']:.2f} | "
                f"{100 * (a['reference']['top1'] - a['top1']):.2f} | {a['top1_agreement']:.4f} | "
                f"{r['calibration_s']:.1f} |"
            )
    lines += ["", f"Chosen (smallest `int8` loss, then agreement): **{res['chosen']}**.", ""]
    return "\n".join(lines)


def main() -> int:
    from codedresnext._io import write_json, write_text
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.export.int8 import Int8Options

    p = demo_parser(__doc__)
    p.add_argument("--calibration-images", type=int, default=512)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--methods", default=None, help="e.g. minmax,percentile:99.999 (default: all four)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    methods = METHODS
    if args.methods:
        methods = [
            (m.split(":")[0], float(m.split(":")[1]) if ":" in m else None) for m in args.methods.split(",")
        ]
    runs = []
    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="codedresnext-calib-") as tmp:
        for method, pct in methods:
            opts = Int8Options(
                args.data, images=args.calibration_images, method=method, eval_images=args.test_images
            )
            if pct is not None:
                opts = Int8Options(**{**vars(opts), "percentile": pct})
            t = time.perf_counter()
            m = export_graphs(
                ExportOptions(
                    out=Path(tmp) / f"{method}{pct or ''}",
                    checkpoint=args.checkpoint,
                    int8=opts,
                    progress=False,
                )
            )
            dt = time.perf_counter() - t
            label = method + (f" {pct}" if pct is not None else "")
            runs.append(
                {
                    "method": label,
                    "export_s": dt,
                    "calibration_s": m.int8["calibration_s"],
                    "precisions": {g.precision: g.accuracy for g in m.graphs if g.name.startswith("full_")},
                }
            )
            print(label, json.dumps({k: v["top1"] for k, v in runs[-1]["precisions"].items()}), flush=True)
    best = min(
        runs,
        key=lambda r: (
            r["precisions"]["int8"]["reference"]["top1"] - r["precisions"]["int8"]["top1"],
            -r["precisions"]["int8"]["top1_agreement"],
        ),
    )
    res = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "calibration_images": args.calibration_images,
        "test_images": args.test_images,
        "load_average_at_start": load,
        "command": " ".join(["python", "benchmarks/int8_calibration.py", *sys.argv[1:]]),
        "runs": runs,
        "chosen": best["method"],
    }
    write_json(args.out / "int8_calibration.json", res)
    page = args.out / "int8_calibration.md"
    write_text(page, with_history(page, _markdown(res)))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
