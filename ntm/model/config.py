"""``ModelConfig``: the architecture (paper §3, defaults from the paper's Tables 1-3), a frozen
dataclass saved beside every checkpoint and export; the model is rebuilt from it. It round-trips
through plain dicts (JSON); an unknown key fails loudly and lists the valid ones.

``architecture`` names the network: the NTM (``ntm.model.machine``) or the paper's LSTM baseline
(``ntm.model.lstm_baseline``, §4.6 and Table 3). Each has settings the other has not
(``NTM_ONLY``, ``LSTM_ONLY``); a config that changes one of the other network's settings from
its default is refused, so a setting that would do nothing never looks as if it did something."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ntm.contract.fields import POSITIVE, ConfigError, check_fields, from_dict, setting

ARCHITECTURES = ("ntm", "lstm")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the NTM (paper §3), or of the LSTM baseline (paper §4.6).

    The defaults are the paper's LSTM-NTM: memory 128 x 20, one LSTM layer of 100 units,
    one read head and one write head, shifts -1..+1; and for the baseline its copy and recall
    size, three stacked LSTM layers of 256 units (Table 3).
    """

    input_size: int = setting(9, "Width of an input vector (fixed by the task).", cli=False,
                              **POSITIVE)
    output_size: int = setting(8, "Width of an output vector (fixed by the task).", cli=False,
                               **POSITIVE)
    # Saved with the run: evaluate, resume and checkpoints rebuild the network it names.
    architecture: str = setting(
        "ntm", "The network: the NTM, or the paper's LSTM baseline (stacked LSTM layers and a "
               "linear output layer, no memory; docs/training.md).", flags=("--model",),
        choices=ARCHITECTURES)
    memory_size: int = setting(128, "Memory rows (N).", **POSITIVE)
    memory_width: int = setting(20, "Memory row width (M).", **POSITIVE)
    controller: str = setting("lstm", "Controller network.", choices=("lstm", "feedforward"))
    controller_size: int = setting(100, "Controller units.", **POSITIVE)
    num_read_heads: int = setting(1, "Read heads.", flags=("--read-heads",), **POSITIVE)
    num_write_heads: int = setting(1, "Write heads.", flags=("--write-heads",), **POSITIVE)
    shift_range: int = setting(1, "Allowed shifts -R..R.", low=0)
    # Controller outputs (head parameters, logits) are clipped to +-clip_value; the LSTM
    # baseline's logits too.
    clip_value: float = setting(20.0, "Controller output clip (the LSTM baseline: its logits).",
                                low=0, low_open=True)
    # Constant initial memory (Collier & Beel 2018), or learned as the paper's "learned biases"
    # (what priority sort, which writes where a priority says, learns faster with:
    # docs/training.md#initial-memory).
    memory_init: float = setting(1e-6, "Constant initial memory value (with --initial-memory "
                                       "constant; rows added past memory_size start at it "
                                       "either way).", low=0)
    initial_memory: str = setting(
        "constant", "The memory before the first input: every row memory_init, or learned "
                    "(N x M weights, trained with the rest).", choices=("constant", "learned"))
    # Running with more rows than memory_size (ntm.model.cell; both measured, docs/memory.md):
    grow_logit_margin: float = setting(
        30.0, "Added rows' initial logits: each head's minimum minus this.", low=0, cli=False)
    grow_strength_power: float = setting(
        2.0, "Key strength x (log N / log memory_size) ** this.", low=0, cli=False)
    # The LSTM baseline (paper §4.6: "All LSTM networks had three stacked hidden layers";
    # Table 3: 3 x 256 for copy and recall, 3 x 512 repeat copy, 3 x 128 N-grams, priority sort).
    lstm_layers: int = setting(3, "LSTM baseline: stacked LSTM layers.", **POSITIVE)
    lstm_units: int = setting(
        256, "LSTM baseline: units per layer (the paper's: 256 for copy and recall, 512 for "
             "repeat copy).", **POSITIVE)

    def __post_init__(self) -> None:
        check_fields(self)
        self.check_architecture()
        if self.has_memory and 2 * self.shift_range + 1 > self.memory_size:
            raise ConfigError(
                f"shift_range {self.shift_range} needs memory_size >= {2 * self.shift_range + 1}, "
                f"got {self.memory_size}", "shift_range")

    def check_architecture(self) -> None:
        """ConfigError naming the first setting of the other network changed from its default
        (``--memory-size`` for the LSTM baseline, ``--lstm-units`` for the NTM)."""
        own = "the NTM" if self.has_memory else "the LSTM baseline"
        other = LSTM_ONLY if self.has_memory else NTM_ONLY
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in other:
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name} is not a setting of {own} (architecture {self.architecture!r}), "
                    f"whose own are {', '.join(self.settings_of(self.architecture))}", name)

    @staticmethod
    def settings_of(architecture: str) -> tuple[str, ...]:
        """The fields only ``architecture`` reads (clip_value and the sizes are common)."""
        return NTM_ONLY if architecture == "ntm" else LSTM_ONLY

    @property
    def has_memory(self) -> bool:
        """True for the NTM: memory, heads and weightings; False for the LSTM baseline."""
        return self.architecture == "ntm"

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


# The fields each network alone reads.
NTM_ONLY = ("memory_size", "memory_width", "controller", "controller_size", "num_read_heads",
            "num_write_heads", "shift_range", "memory_init", "initial_memory",
            "grow_logit_margin", "grow_strength_power")
LSTM_ONLY = ("lstm_layers", "lstm_units")
