"""The fused NTM kernel: an onnxruntime custom-op library (C++ source in ``kernels/``).

``ntm.contract.kernel_library`` finds and registers the built library (serving uses it);
``build`` compiles it from the repository (``ntm build-kernel``); ``headers`` fetches the
onnxruntime C API headers the build needs.
"""
