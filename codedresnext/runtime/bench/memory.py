"""Peak resident memory of this process (Linux /proc): what `bench` reports as peak memory.

Peak = VmHWM after loading a graph and running one batch, minus VmRSS just before the load (the
runtime library already imported), with the high-water mark reset first (`echo 5 >
/proc/self/clear_refs`). `bench` measures each graph in a fresh subprocess so that memory freed by
an earlier graph cannot hide a later one's. It counts the session/engine, weights and activations
in host memory; not GPU memory.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..backends import backend_info


def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def reset_peak() -> int | None:
    """Reset the high-water mark; return the current RSS (KiB) or None where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def peak_delta_mib(rss_before_kib: int | None) -> float | None:
    hwm = _status_kib("VmHWM")
    if rss_before_kib is None or hwm is None:
        return None
    return round((hwm - rss_before_kib) / 1024.0, 2)


def measure_in_subprocess(
    backend: str, path: str, *, batch: int, options: dict, timeout: float = 600
) -> dict:
    """Peak RSS of loading `path` and running one batch, in a fresh process (so memory freed by
    earlier graphs cannot hide this one's). Returns {"peak_rss_mib", "baseline_rss_mib"} or {"error"}."""
    import json
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "codedresnext.runtime.bench.memory",
        backend,
        str(path),
        str(batch),
        json.dumps(options),
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _child(backend: str, path: str, batch: int, options: dict) -> dict:
    import importlib

    info = backend_info(backend)
    importlib.import_module(info.library)  # the library's own load is baseline, not the graph's
    base = reset_peak()
    with getattr(importlib.import_module(info.module), info.cls)().load(path, **options) as be:
        be.infer(be.random_feed(batch))
        peak = peak_delta_mib(base)
    return {"peak_rss_mib": peak, "baseline_rss_mib": round((base or 0) / 1024.0, 2)}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))))
