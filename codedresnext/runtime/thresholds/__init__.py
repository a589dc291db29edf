"""Threshold calibration on held-out data (numpy + a runtime backend; no torch): detector thresholds
(F1-optimal, stored in manifest and graphs), early-exit confidences (joint search) and early reject
(per coded block, distance or learned logistic score). Not to be confused with INT8 range
calibration, which is export/quantize.py's business."""
