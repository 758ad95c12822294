"""The Task interface every task implements (NumPy only)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ntm.contract.tasks.base import Batch, InvalidRequest, bits_block, stack_sequences


# Fields any request may add to shape its answer (not the task's business): attention
# weightings (default off), per-step probabilities (default on).
RESPONSE_FLAGS = ("return_attention", "return_probabilities")


@dataclass(frozen=True)
class Difficulty:
    """Where a sequence sits on the task's scale.

    length:  copy / repeat-copy sequence length, or recall item count
    repeats: repeat-copy repeat count (None for the other tasks)
    """

    length: int
    repeats: int | None = None

    def label(self) -> str:
        return str(self.length) if self.repeats is None else f"{self.length}x{self.repeats}"


@dataclass(frozen=True)
class Encoded:
    """A request turned into model input, with what the decoder needs to read the answer.

    inputs:       float32 [time, input_size]
    output_steps: the time steps whose outputs hold the answer
    difficulty:   the request's length (and repeats)
    """

    inputs: np.ndarray
    output_steps: slice
    difficulty: Difficulty


def span(pair: tuple[int, int]) -> str:
    """(1, 20) -> "1-20"; (20, 20) -> "20"."""
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


class Task(abc.ABC):
    """A task: data, loss mask, request codec, rendering, model widths, training range and
    evaluation points. Everything task-specific lives behind this interface, so a task defined
    in another package (registered under the ``ntm.tasks`` entry-point group, see
    ``ntm.contract.tasks.registry``) works through every command.

    A subclass's constructor takes its ``parameters()`` as keywords plus ``train_lengths``
    (and ``train_repeats`` when the task has repeats).
    """

    name: ClassVar[str]
    length_name: ClassVar[str] = "length"  # what Difficulty.length counts, for tables
    min_length: ClassVar[int] = 1  # smallest buildable Difficulty.length
    # The request fields that tell this task's requests apart from other tasks' (``guess``):
    # the task whose keys are all present, the most of them, is the request's task.
    request_keys: ClassVar[tuple[str, ...]] = ()
    # ``ntm train`` defaults this task sets for itself ({TrainConfig field: value}), each
    # measured by the seed sweep (benchmarks/seeds.py) for this task.
    train_defaults: ClassVar[dict[str, Any]] = {}
    # ModelConfig fields this task sets for a new NTM run ({field: value}) where the command
    # leaves them alone, each measured on this task's trained models.
    model_defaults: ClassVar[dict[str, Any]] = {}
    # Whether ``with_blank_runs`` can blank runs of this task's items (``ntm train --blank-runs``).
    blanks_items: ClassVar[bool] = False
    # Whether every target bit follows from the input, so that a sequence with any wrong bit
    # is a failed answer (model cards count those failures). N-grams' next bits are random: even
    # the optimal estimator gets many wrong, and its measure is its cost (``measures``).
    exact_answers: ClassVar[bool] = True

    input_size: int
    output_size: int
    train_lengths: tuple[int, int]
    train_repeats: tuple[int, int] | None = None

    # -- data -------------------------------------------------------------------------------
    @abc.abstractmethod
    def sequence(
        self, rng: np.random.Generator, difficulty: Difficulty
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One random sequence: inputs [time, input_size], targets [time, output_size],
        mask [time] (1 where the output is scored)."""

    @abc.abstractmethod
    def time_steps(self, difficulty: Difficulty) -> int:
        """Time steps of a sequence at ``difficulty`` (input and output phases together)."""

    def sample_difficulty(
        self,
        rng: np.random.Generator,
        lengths: tuple[int, int],
        repeats: tuple[int, int] | None = None,
    ) -> Difficulty:
        """A difficulty drawn uniformly from the inclusive ranges."""
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        if self.train_repeats is None:
            return Difficulty(length)
        repeats = repeats or self.train_repeats
        return Difficulty(length, int(rng.integers(repeats[0], repeats[1] + 1)))

    def batch(
        self,
        rng: np.random.Generator,
        batch_size: int,
        lengths: tuple[int, int] | None = None,
        repeats: tuple[int, int] | None = None,
    ) -> Batch:
        """A right-padded batch; each sequence draws its own difficulty from the ranges
        (default: the training ranges)."""
        lengths = lengths or self.train_lengths
        self.check_difficulty(Difficulty(lengths[1], repeats[1] if repeats else None))
        parts = [self.sequence(rng, self.sample_difficulty(rng, lengths, repeats))
                 for _ in range(batch_size)]
        return stack_sequences(*zip(*parts))

    def with_blank_runs(self, batch: Batch, rng: np.random.Generator, fraction: float) -> Batch:
        """``batch`` with a run of 2-5 consecutive items blanked (every bit 0) in about
        ``fraction`` of its sequences, inputs and targets alike (a new Batch). Only tasks with
        ``blanks_items`` implement it."""
        raise NotImplementedError(f"the {self.name} task cannot blank runs of its items")

    def fixed_batch(self, rng: np.random.Generator, batch_size: int, difficulty: Difficulty) -> Batch:
        """A batch whose sequences all have the same difficulty (for generalisation tables)."""
        self.check_difficulty(difficulty)
        parts = [self.sequence(rng, difficulty) for _ in range(batch_size)]
        return stack_sequences(*zip(*parts))

    def check_difficulty(self, difficulty: Difficulty) -> None:
        """Raise ValueError for a difficulty the task cannot build."""
        if difficulty.length < self.min_length:
            raise ValueError(f"{self.name}: {self.length_name} must be >= {self.min_length}, "
                             f"got {difficulty.length}")
        if self.train_repeats is not None and difficulty.repeats is not None \
                and difficulty.repeats < 1:
            raise ValueError(f"{self.name}: repeats must be >= 1, got {difficulty.repeats}")

    # -- memory and training range --------------------------------------------------------
    @abc.abstractmethod
    def memory_rows(self, difficulty: Difficulty) -> int:
        """Memory rows a sequence at ``difficulty`` needs: one for each step before the answer
        starts, plus one. A head that writes one row per step then never wraps around onto
        what it wrote (the trained models write at most one row per step)."""

    def memory_rows_for_time_steps(self, time_steps: int) -> int:
        """The most rows any ``time_steps``-step input of this task can need (for raw tensors,
        whose difficulty is not known). Default: every step an input step, plus one."""
        return time_steps + 1

    def within_training_range(self, difficulty: Difficulty) -> bool:
        """True when ``difficulty`` lies inside the ranges the model was trained on (length,
        and repeats for repeat-copy); False means the answer is an extrapolation."""
        lo, hi = self.train_lengths
        if not lo <= difficulty.length <= hi:
            return False
        if self.train_repeats is not None and difficulty.repeats is not None:
            return self.train_repeats[0] <= difficulty.repeats <= self.train_repeats[1]
        return True

    def with_training_ranges(self, lengths: tuple[int, int] | None = None,
                             repeats: tuple[int, int] | None = None) -> "Task":
        """The same task trained on other ranges (None keeps a range); ValueError when the
        task has no repeats but ``repeats`` is given, or a range is impossible."""
        lengths = tuple(lengths or self.train_lengths)
        if not self.min_length <= lengths[0] <= lengths[1]:
            raise ValueError(f"length range {lengths[0]}..{lengths[1]} is impossible for "
                             f"{self.name}: need {self.min_length} <= min <= max")
        kwargs: dict[str, Any] = {**self.parameters(), "train_lengths": lengths}
        if repeats is not None:
            if self.train_repeats is None:
                raise ValueError(f"{self.name} has no repeats: a repeat range is not an option "
                                 f"for it")
            if not 1 <= repeats[0] <= repeats[1]:
                raise ValueError(f"repeat range {repeats[0]}..{repeats[1]} is impossible: need "
                                 f"1 <= min <= max")
        if self.train_repeats is not None:
            kwargs["train_repeats"] = tuple(repeats or self.train_repeats)
        return type(self)(**kwargs)

    @property
    def hardest_training_difficulty(self) -> Difficulty:
        """The top of the training ranges."""
        return Difficulty(self.train_lengths[1],
                          self.train_repeats[1] if self.train_repeats else None)

    def training_range(self) -> str:
        """The training range in words, e.g. "length 1-20", "length 1-10, repeats 1-10" or
        "vectors 20" (one value, not a range)."""
        text = f"{self.length_name} {span(self.train_lengths)}"
        if self.train_repeats is not None:
            text += f", repeats {span(self.train_repeats)}"
        return text

    @property
    def max_trained_time_steps(self) -> int:
        """Time steps of the longest training sequence."""
        return self.time_steps(self.hardest_training_difficulty)

    @abc.abstractmethod
    def default_eval_points(self) -> list[Difficulty]:
        """The generalisation table's default points (inside and beyond the training range)."""

    def measures(self, probabilities: np.ndarray, batch: Batch) -> dict[str, np.ndarray]:
        """This task's own measures beside bits wrong, per sequence, for the evaluation table:
        probabilities [batch, time, output_size] of ``batch`` -> {name: float64 [batch]}
        (N-grams: its cost in bits and the optimal estimator's). None by default."""
        return {}

    def quality_bars(self) -> dict[Difficulty, float]:
        """{point: most bits/seq allowed} that a bundled model of this task must meet (its
        model card reports each); none by default."""
        return {}

    # -- requests ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, request: Any) -> Encoded:
        """A plain request (JSON object) -> model input; InvalidRequest names a bad field."""

    @abc.abstractmethod
    def decode(self, probabilities: np.ndarray, encoded: Encoded) -> dict[str, Any]:
        """Model output probabilities [time, output_size] for ``encoded`` -> the answer."""

    def answer_probabilities(self, answer: dict[str, Any], encoded: Encoded) -> np.ndarray:
        """The per-step probabilities [time, output_size] an answer (``decode``'s) carries for
        ``encoded``, back in the model's layout (steps the answer has nothing for stay 0): what a
        picture of a server's answer draws. Default: ``answer["probabilities"]`` are the
        scored steps' first channels."""
        steps = encoded.inputs.shape[0]
        out = np.zeros((steps, self.output_size), np.float32)
        scored = np.asarray(answer["probabilities"], np.float32)
        first = encoded.output_steps.start
        out[first:first + len(scored), :scored.shape[1]] = scored
        return out

    @abc.abstractmethod
    def request_example(self, rng: np.random.Generator, difficulty: Difficulty) -> tuple[dict, dict]:
        """A random request and the answer a perfect model gives (for examples and tests)."""

    # -- requests in parts (a stateful model keeps its memory between them) -------------------
    def encode_part(self, request: dict, context: dict) -> tuple[Encoded, dict]:
        """One request of a sequence whose memory a stateful model keeps (``ntm serve``'s task
        API with a ``sequence_id``) -> (its model input, the context for the next part).

        ``context`` is what earlier parts left ({} for the first). An Encoded whose
        ``output_steps`` is empty answers nothing (``decode_part``). Default: this task takes
        every request whole (InvalidRequest).
        """
        raise InvalidRequest("sequence_id", f"task {self.name} takes each request whole, not "
                                            f"in parts; send it without sequence_id")

    def decode_part(self, probabilities: np.ndarray, encoded: Encoded, context: dict
                    ) -> dict[str, Any]:
        """The answer of one part (``encode_part``): ``decode`` when the part asks something,
        else what the sequence holds so far."""
        steps = encoded.output_steps
        if steps.stop is not None and steps.start is not None and steps.stop > steps.start:
            return self.decode(probabilities, encoded)
        return {}

    # -- description ------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything the serving side needs to rebuild this task's codec (JSON-able)."""
        return {
            "task": self.name,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "train_lengths": list(self.train_lengths),
            "train_repeats": list(self.train_repeats) if self.train_repeats else None,
            "parameters": self.parameters(),
        }

    @abc.abstractmethod
    def parameters(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this task (JSON-able)."""

    input_labels: ClassVar[list[str] | None] = None
    output_labels: ClassVar[list[str] | None] = None

    def render_answer(self, request: dict, answer: dict) -> list[str]:
        """A request and its answer as text blocks, like the paper's bit figures (``ntm predict
        --pretty``). Default: each of the request's fields, then the answer's "output"."""
        parts = [bits_block(key, value) if isinstance(value, list) else f"{key} {value}"
                 for key, value in request.items() if key not in RESPONSE_FLAGS]
        if "output" in answer:
            parts.append(bits_block("output", answer["output"]))
        return parts

    @staticmethod
    def require_object(request: Any, keys: list[str]) -> dict:
        """Check that ``request`` is a JSON object holding ``keys``; InvalidRequest otherwise."""
        if not isinstance(request, dict):
            raise InvalidRequest("request", f"must be a JSON object with keys {keys}, "
                                            f"got {type(request).__name__}")
        for key in keys:
            if key not in request:
                raise InvalidRequest(key, "is required")
        allowed = set(keys) | set(RESPONSE_FLAGS)
        extra = sorted(set(request) - allowed)
        if extra:
            raise InvalidRequest(extra[0], f"is not a field of a {keys} request; "
                                           f"allowed: {sorted(allowed)}")
        return request
