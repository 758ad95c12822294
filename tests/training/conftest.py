"""Fixtures of the training tests."""

import pytest

tf = pytest.importorskip("tensorflow")


@pytest.fixture
def nan_at():
    """nan_at(trainer, steps): the trainer's batches at ``steps`` get NaN inputs, so the loss and
    every gradient there are NaN (the way a bad batch reaches the non-finite guard; the compiled
    step has no hook for it)."""
    import dataclasses

    import numpy as np

    def poison(trainer, steps):
        batch_for = trainer.batch_for

        def batch(step):
            clean = batch_for(step)
            if step not in steps:
                return clean
            return dataclasses.replace(clean, inputs=np.full_like(clean.inputs, np.nan))

        trainer.batch_for = batch
        return trainer

    return poison
