"""Turning a training run into artefacts that run without this project's model code.

``ntm.contract.metadata`` is TensorFlow-free (the serving side reads it); the writers
(``ntm.export.savedmodel``, ``ntm.export.onnx_export``, ``ntm.export.triton``) import TensorFlow/tf2onnx.
"""
