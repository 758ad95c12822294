"""The contract: what every layer of ntm agrees on, with NumPy alone (never TensorFlow).

- ``tasks``: the task definitions (generation, request codecs, training ranges, evaluation
  points) and the registry that finds them, built-in or plugged in through the ``ntm.tasks``
  entry-point group;
- ``metadata``: the keys and JSON documents an exported ONNX model carries;
- ``memory_plan``: how many memory rows a request gets;
- ``errors``: ``NtmError``, the base of every error this project raises on purpose.

The model (``ntm.model`` and its layers), ``ntm.export``, ``ntm.serving`` and ``ntm.cli`` import
this package; it imports none of them. ``ntm.serving`` imports nothing else of the project.
"""
