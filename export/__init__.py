"""Turning a training run into artefacts that run without this project's model code.

- ``exporter``: ``ntm export``'s engine: a run -> verified SavedModel, ONNX or Triton repository;
- ``signatures``: the serving function an export is traced from (dynamic or fixed length);
- ``writers``: the three formats, each written to a temporary path first;
- ``verify``: the proof that an export computes what the TensorFlow model computes;
- ``bundle``: exports a run into ``ntm/pretrained/`` with its model card (maintainers);
- ``recover``: rebuilds a run directory from an exported ONNX model.

The metadata an export carries is ``ntm.contract.metadata`` (TensorFlow-free: the serving side
reads it). ``verify`` is NumPy only; the others import TensorFlow, tf2onnx or onnx (``bundle``
inside its functions).
"""
