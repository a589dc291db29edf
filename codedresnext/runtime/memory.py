"""Peak resident memory of this process (Linux /proc): what `bench` reports as peak memory.

Peak = VmHWM after a load + warm-up, minus VmRSS just before it, with the high-water mark reset
first (`echo 5 > /proc/self/clear_refs`). It counts the session/engine, weights and activations
in host memory; not GPU memory.
"""

from __future__ import annotations

import re
from pathlib import Path


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
