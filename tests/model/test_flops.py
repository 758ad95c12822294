"""The FLOP count of one step, checked against a hand count of the paper's default model."""

from ntm.model.config import ModelConfig
from ntm.model.flops import (addressing_flops, controller_flops, flops_per_step,
                             head_parameter_flops, memory_flops, output_flops)


def test_default_copy_model_hand_count():
    c = ModelConfig()  # copy: I 9, O 8, N 128, M 20, LSTM 100, 1 read + 1 write head, S 3
    assert controller_flops(c) == 2 * (9 + 20 + 100) * 400 + 14 * 100  # 104,600
    params = 2 * (20 + 3 + 3) + 2 * 20  # 92 head parameters
    assert head_parameter_flops(c) == 2 * 100 * params + 4 * params
    assert memory_flops(c) == 2 * 128 * 20 + 2 * 128 * 20 + 3 * 128 * 20
    assert output_flops(c) == 2 * 120 * 8 + 3 * 8
    assert flops_per_step(c) == 166_904


def test_memory_terms_scale_with_memory_size():
    small, large = ModelConfig(memory_size=64), ModelConfig(memory_size=128)
    assert addressing_flops(large) == 2 * addressing_flops(small) - 3 * 2 * 20  # key norms fixed
    assert memory_flops(large) == 2 * memory_flops(small)
    assert controller_flops(large) == controller_flops(small)


def test_feedforward_controller_is_cheaper():
    assert controller_flops(ModelConfig(controller="feedforward")) < controller_flops(ModelConfig())
