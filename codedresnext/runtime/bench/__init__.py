"""Benchmarking in trtexec's vocabulary: interleaved timing (latency percentiles, samples/s), peak
memory, the environment a figure holds on (CPU model and ISA, GPUs, library versions), early-exit
and precision comparisons, and reports (JSON, Markdown, plot)."""
