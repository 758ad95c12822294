"""Turning a training run into artefacts that run without this project's model code.

``export.metadata`` is TensorFlow-free (the serving side reads it); the writers
(``export.savedmodel``, ``export.onnx_export``, ``export.triton``) import TensorFlow/tf2onnx.
"""
