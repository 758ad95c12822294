"""``ModelConfig``: the architecture (paper §3, defaults from the paper's Tables 1-3), a frozen
dataclass saved beside every checkpoint and export; the model is rebuilt from it. It round-trips
through plain dicts (JSON); an unknown key fails loudly and lists the valid ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ntm.contract.fields import POSITIVE, ConfigError, check_fields, from_dict, setting


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the NTM (paper §3).

    The defaults are the paper's LSTM-NTM: memory 128 x 20, one LSTM layer of 100 units,
    one read head and one write head, shifts -1..+1.
    """

    input_size: int = setting(9, "Width of an input vector (fixed by the task).", cli=False,
                              **POSITIVE)
    output_size: int = setting(8, "Width of an output vector (fixed by the task).", cli=False,
                               **POSITIVE)
    memory_size: int = setting(128, "Memory rows (N).", **POSITIVE)
    memory_width: int = setting(20, "Memory row width (M).", **POSITIVE)
    controller: str = setting("lstm", "Controller network.", choices=("lstm", "feedforward"))
    controller_size: int = setting(100, "Controller units.", **POSITIVE)
    num_read_heads: int = setting(1, "Read heads.", flags=("--read-heads",), **POSITIVE)
    num_write_heads: int = setting(1, "Write heads.", flags=("--write-heads",), **POSITIVE)
    shift_range: int = setting(1, "Allowed shifts -R..R.", low=0)
    # Controller outputs (head parameters, logits) are clipped to +-clip_value.
    clip_value: float = setting(20.0, "Controller output clip.", low=0, low_open=True)
    # Constant initial memory (Collier & Beel 2018).
    memory_init: float = setting(1e-6, "Constant initial memory value.", low=0)
    # Running with more rows than memory_size (ntm.model.cell; both measured, docs/memory.md):
    grow_logit_margin: float = setting(
        30.0, "Added rows' initial logits: each head's minimum minus this.", low=0, cli=False)
    grow_strength_power: float = setting(
        2.0, "Key strength x (log N / log memory_size) ** this.", low=0, cli=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if 2 * self.shift_range + 1 > self.memory_size:
            raise ConfigError(
                f"shift_range {self.shift_range} needs memory_size >= {2 * self.shift_range + 1}, "
                f"got {self.memory_size}", "shift_range")

    @property
    def num_heads(self) -> int:
        return self.num_read_heads + self.num_write_heads

    @property
    def num_shifts(self) -> int:
        return 2 * self.shift_range + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return from_dict(cls, data)
