"""Runtime: run exported graphs on a device, torch-free (numpy, onnx and one inference library).

Subpackages, by what they serve:
  backends/    one folder per framework (onnxrt, trt, pytorch) behind one small `Backend` interface
  api/         what applications import: detectors, the early-exit cascade, predict
  thresholds/  threshold calibration on held-out data (detector F1, early exit, early reject)
  bench/       benchmarking in trtexec's vocabulary (timing, memory, environment, reports)
The names below are the application API.
"""

from __future__ import annotations

from .api.cascade import CascadeResult, EarlyExitClassifier
from .api.detector import Detector, RejectDetector, SubsetDetector
from .backends import BACKENDS, Backend, TensorSpec, open_backend
