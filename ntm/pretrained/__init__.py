"""Pretrained models shipped inside the package: ``<task>.onnx`` with a model card beside it
(``<task>.json``, ``<task>.md``). Trained with ``ntm train`` and exported with ``ntm export``;
the cards give the exact commands."""
