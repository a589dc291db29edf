"""Evaluation: binary detectors, early decoders, branch specialisation, plots and the report.

`metrics` and `sampling` are pure numpy; the torch and matplotlib parts import lazily.
"""
