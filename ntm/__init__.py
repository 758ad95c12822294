"""ntm: a Neural Turing Machine that learns, exported to ONNX and served on CPU.

Importing this package (or ``ntm.contract``) never imports TensorFlow; the TensorFlow model
lives in ``ntm.model``, its training in ``ntm.training``, imported on demand.

The library, on onnxruntime alone::

    import ntm

    with ntm.load("copy") as model:
        [answer] = model.predict([{"sequence": [[0, 1, 1, 0, 1, 0, 0, 1]]}])
"""

__version__ = "0.1.0"


def load(model, name=None, **options):
    """Load an exported model in this process: a bundled model's name ("copy", "repeat-copy",
    "recall"), your export's name, or a path to an ``.onnx`` file; ``options`` are
    ``ntm.serving.RuntimeOptions`` fields. Returns an ``ntm.serving.library.Model``:
    ``.predict(requests)`` answers the requests the HTTP task API takes.
    """
    from ntm.serving.library import load as load_model  # onnxruntime: only when asked for

    return load_model(model, name, **options)
