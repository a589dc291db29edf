"""A self-contained device bundle (Jetson / any TensorRT or ONNX Runtime device) for some classes.

The layout is LAYOUT below (also written to BUNDLE/README.md).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from .._io import write_json, write_text
from ..artifact import FP16, FP32, ManifestEntry, load_manifest
from ..errors import GraphError
from .subset import detector_entries, write_subset

RUN_PY = Path(__file__).with_name("bundle_run.py")
CALIBRATION_FILE = "int8_calibration.json"
TRT_CACHE_HEADER = "TRT-100-EntropyCalibration2"
LAYOUT = """\
manifest.json, <graph>.onnx   the classes' detector graphs (fp32 and any fp16 / int8 twins) with
                              their manifest subset: Detector(BUNDLE, "class_cat") opens it
labels.txt                    the bundled classes, one per line
thresholds.json               {graph: {class: logit threshold}} (decision: logit > threshold)
int8_calibration.json         ONNX Runtime's calibration cache, where the export has one
calibration.cache             the same activation ranges as a TensorRT calibration cache (text:
                              a header line, then "tensor: hex of the big-endian float32 scale",
                              scale = max(|min|, |max|) / 127), for builders that calibrate the
                              fp32 graph instead of building the Q/DQ twin
build.sh                      trtexec and `codedresnext build` commands for fp16 / int8 engines
run.py                        runs the detectors on ONNX Runtime with the torch-free install
"""


def write_bundle(
    directory: str | os.PathLike,
    classes: list[str],
    out: str | os.PathLike,
    *,
    batch: tuple[int, int, int] = (1, 8, 32),
    dla_core: int | None = None,
) -> list[Path]:
    """Write the bundle for `classes` (see LAYOUT); returns the files written."""
    directory, out = Path(directory), Path(out)
    if not classes:
        raise GraphError("--classes is empty; name the classes to bundle, e.g. --classes cat,dog")
    if out.exists() and any(out.iterdir()):
        raise GraphError(f"{out} exists and is not empty; choose a new --out folder")
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise GraphError(f"--batch {lo},{opt},{hi}: need 1 <= MIN <= OPT <= MAX")
    manifest = load_manifest(directory)
    entries = detector_entries(manifest, classes)
    files = write_subset(directory, [g.name for g in entries], out)
    write_text(out / "labels.txt", "".join(f"{c}\n" for c in classes))
    write_json(out / "thresholds.json", {g.name: g.thresholds or {} for g in entries})
    files += [out / "manifest.json", out / "labels.txt", out / "thresholds.json"]
    cal = directory / CALIBRATION_FILE
    if cal.is_file():
        shutil.copyfile(cal, out / CALIBRATION_FILE)
        write_text(out / "calibration.cache", trt_calibration_cache(cal))
        files += [out / CALIBRATION_FILE, out / "calibration.cache"]
    script = build_script(entries, batch, dla_core)
    write_text(out / "build.sh", script)
    os.chmod(out / "build.sh", 0o755)
    shutil.copyfile(RUN_PY, out / "run.py")
    write_text(out / "README.md", bundle_readme(entries, classes))
    return [*files, out / "build.sh", out / "run.py", out / "README.md"]


def trt_calibration_cache(path: Path) -> str:
    """ONNX Runtime calibration ranges -> TensorRT's calibration cache text (symmetric int8 scales)."""
    from onnxruntime.quantization.calibrate import load_tensors_data  # the exporter's cache format

    try:
        ranges = load_tensors_data(path)
    except (ValueError, KeyError) as e:
        raise GraphError(f"{path} is not an ONNX Runtime calibration cache: {e}") from e
    lines = [TRT_CACHE_HEADER]
    for name in sorted(ranges.data):
        lo, hi = (float(v) for v in ranges[name].range_value)
        scale = max(abs(lo), abs(hi)) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def read_trt_calibration_cache(text: str) -> dict[str, float]:
    """{tensor: scale} of a TensorRT calibration cache (the inverse of trt_calibration_cache)."""
    out = {}
    for line in text.splitlines()[1:]:
        name, _, hexval = line.rpartition(": ")
        out[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return out


def _shapes(g: ManifestEntry, batch: tuple[int, int, int]) -> str:
    name = g.input_names[0] if g.input_names else "images"
    dims = "32x32x3" if name == "frames" else "3x32x32"
    return " ".join(f"--{k}Shapes={name}:{b}x{dims}" for k, b in zip(("min", "opt", "max"), batch))


def build_script(entries: list[ManifestEntry], batch: tuple[int, int, int], dla_core: int | None) -> str:
    """build.sh: trtexec per graph and precision (TensorRT 10 flags, or 11's strongly typed builds)."""
    by_name = {g.name: g for g in entries}
    lines = [
        "#!/usr/bin/env bash",
        "# Build TensorRT engines on the device (engines are tied to its GPU and TensorRT version).",
        "# PRECISION=fp32|fp16|int8 (default fp16); DLA_CORE=N builds for that DLA core, unsupported",
        "# layers falling back to the GPU (trtexec reports them). TRT_MAJOR is detected (10 or 11):",
        "# TensorRT 11 builds strongly typed only (no --fp16/--int8: the fp16 / int8 graphs carry it).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "PRECISION=${PRECISION:-fp16}",
        "TRT_MAJOR=${TRT_MAJOR:-$(python3 -c 'import tensorrt; print(tensorrt.__version__.split(\".\")[0])' "
        "2>/dev/null || echo 10)}",
        f"DLA_CORE=${{DLA_CORE:-{'' if dla_core is None else dla_core}}}",
        'DLA=""; if [ -n "$DLA_CORE" ]; then DLA="--useDLACore=$DLA_CORE --allowGPUFallback"; fi',
        "mkdir -p engines",
        "build() {  # graph onnx, engine name, TensorRT 10 flag",
        '  local typed="$3"; if [ "$TRT_MAJOR" -ge 11 ]; then typed="--stronglyTyped"; fi',
        '  trtexec --onnx="$1" --saveEngine="engines/$2.plan" $typed $DLA $4 '
        "--timingCacheFile=engines/timing.cache --skipInference",
        "}",
    ]
    for g in entries:
        if g.precision != FP32:
            continue
        shapes = _shapes(g, batch)
        fp16 = by_name.get(f"{g.name}_fp16")
        int8 = by_name.get(f"{g.name}_int8")
        lines.append(f'if [ "$PRECISION" = fp32 ]; then build {g.file} {g.name}_fp32 "" "{shapes}"; fi')
        src16 = fp16.file if fp16 else g.file
        lines.append(f'if [ "$PRECISION" = fp16 ]; then build {src16} {g.name}_fp16 --fp16 "{shapes}"; fi')
        if int8:
            lines.append(
                f'if [ "$PRECISION" = int8 ]; then build {int8.file} {g.name}_int8 --int8 "{shapes}"; fi'
            )
        else:
            lines.append(
                f'if [ "$PRECISION" = int8 ]; then echo "no int8 twin of {g.name}: export --int8" >&2; fi'
            )
    lines += [
        "# or, with the project installed on the device (records each engine's profile beside it):",
        f"#   codedresnext build . --precision $PRECISION --batch {','.join(map(str, batch))} "
        "--cache engines",
        "",
    ]
    return "\n".join(lines)


def bundle_readme(entries: list[ManifestEntry], classes: list[str]) -> str:
    graphs = ", ".join(f"{g.name} ({g.precision})" for g in entries)
    twins = "fp16 twins present" if any(g.precision == FP16 for g in entries) else "no fp16 twins"
    return (
        f"# Device bundle: {', '.join(classes)}\n\nGraphs: {graphs}; {twins}.\n\n"
        "Run on ONNX Runtime (`pip install codedresnext`, no torch): `python run.py frames.npy` "
        "(uint8 N x H x W x 3) or `python run.py a.png b.jpg`.\nBuild TensorRT engines: "
        "`PRECISION=fp16 ./build.sh` (int8, fp32; `DLA_CORE=0` for a DLA build with GPU fallback).\n\n"
        "```\n" + LAYOUT + "```\n"
    )
