import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.config import ModelConfig

SMALL = ModelConfig(input_size=5, output_size=4, memory_size=16, memory_width=6,
                    controller_size=12, num_read_heads=2, num_write_heads=2, shift_range=1)


@pytest.fixture(scope="session")
def small_config() -> ModelConfig:
    """Batch and heads above 1 so broadcasting bugs show."""
    return SMALL


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
