"""Deploy: what leaves the machine. Triton Inference Server model repositories (and serving them),
DeepStream nvinfer configs, and self-contained device bundles for Jetson / TensorRT.

torch-free, like the runtime it packages: a deploy machine needs only the core install.
"""
