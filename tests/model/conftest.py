"""Fixtures of the model's tests: a small config with batch and heads above 1."""

import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.config import ModelConfig

SMALL = ModelConfig(input_size=5, output_size=4, memory_size=16, memory_width=6,
                    controller_size=12, num_read_heads=2, num_write_heads=2, shift_range=1)


@pytest.fixture(scope="session")
def small_config() -> ModelConfig:
    """Batch and heads above 1 so broadcasting bugs show."""
    return SMALL
