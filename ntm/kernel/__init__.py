"""The fused NTM kernel: an onnxruntime custom-op library (C++ source in ``kernels/``).

``library`` finds and registers the built library (no TensorFlow, no compiler: serving uses it);
``build`` compiles it from the repository (``ntm build-kernel``); ``headers`` fetches the
onnxruntime C API headers the build needs.
"""
