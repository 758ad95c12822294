"""ntm: a Neural Turing Machine that learns, exported to ONNX and served on CPU.

Importing this package (or ``ntm.contract.tasks``, ``ntm.config``) never imports TensorFlow; the TensorFlow
model lives in ``ntm.model`` and its layers, imported on demand.
"""

__version__ = "0.1.0"
