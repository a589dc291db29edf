"""TensorRT (10, what JetPack 6 ships, and 11): engine building and running. plan.py holds what needs
no TensorRT (version branching, precisions, profiles, cache keys) so it is tested everywhere;
engine.py imports tensorrt inside its functions."""
