"""PyTorch: the exported ONNX graphs themselves (pruned ones too) on CPU or CUDA, through a small
importer for the project's op allowlist (onnx_import, onnx_ops), with CUDA-graph replay; the GPU
path where TensorRT is absent. Only runner.py may be imported without torch installed."""
