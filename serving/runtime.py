"""``ModelRuntime``: one exported ONNX model, run with onnxruntime, read through its metadata.

Two APIs over the same session:
- ``run(inputs, memory_size)``: arrays, float32 [batch, time, input_size] -> probabilities
  [batch, time, output_size] and attention [batch, time, heads, N];
- the task codec over it lives in ``ntm.serving.codec`` (one request <-> model arrays).

Memory rows: a dynamic export takes N per call. Each request runs with the smallest of the
trained N x 1, 2, 4, ... (up to ``max_memory_size``) that holds what the task must store
(``ntm.contract.memory_plan``), unless ``RuntimeOptions.memory_size`` fixes N. Every task answer says
whether the request lay inside the training range (``within_training_range``) and which N it
ran with (``memory_size``).

A model without memory (the LSTM baseline; ``ModelParts``) has no rows and no attention: its
rows are None wherever an NTM's would be a number, and its runs give None for the attention.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ntm.contract import metadata as meta
from ntm.contract.memory_plan import MemoryLimitExceeded, choose_memory_size
from ntm.contract.tasks import Task, task_from_metadata
from ntm.contract.kernel_library import KernelUnavailable
from ntm.contract.kernel_library import register as register_kernel
from ntm.serving.errors import BadRequest, InferenceFailed, ModelLoadError, Unprocessable
from ntm.serving.models import fused_twin, standard_twin
# RuntimeOptions lives with the other settings (light to import: the CLI reads its defaults).
from ntm.serving.settings import RuntimeOptions

class _NeedsKernel(Exception):
    """onnxruntime refused a model for its ai.ntm node: a fused model opened as standard."""


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """One warning per message and process (every model would otherwise repeat it)."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def choose_engine(path: Path, engine: str) -> tuple[str, Path]:
    """(engine, file) a model at ``path`` runs with under ``--engine engine``.

    ``path`` may be a standard model or its fused twin (``NAME.fused.onnx``). "auto" and
    "fused" take the twin when it exists ("fused" insists: ModelLoadError saying what is
    missing); a kernel that then is not built or does not load makes ``ModelRuntime`` fall back
    under "auto", with one warning. "standard" takes the standard file."""
    standard, fused = standard_twin(path), fused_twin(path)
    if engine == "standard":
        if not standard.is_file():
            raise ModelLoadError(f"{path} is a fused model and no standard model {standard.name} "
                                 f"lies beside it; use --engine fused or auto")
        return "standard", standard
    if not fused.is_file():
        if engine == "fused":
            raise ModelLoadError(f"{path}: --engine fused, but it has no fused twin "
                                 f"({fused.name}; export one with `ntm export --kernel fused`)")
        return "standard", standard
    return "fused", fused


class ModelRuntime:
    """An exported model (the NTM, or the LSTM baseline) ready to run.

    Args:
        path: the ``.onnx`` file written by ``ntm export``.
        name: the name it is served under [default: the task name].
        options: session settings.
    Raises ModelLoadError (one line, naming the file) when the file is missing, not ONNX, or
    lacks ntm metadata.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None,
                 options: RuntimeOptions | None = None):
        self.path = Path(path)
        self.options = options or RuntimeOptions()
        if not self.path.is_file():
            raise ModelLoadError(f"model file {self.path} does not exist")
        # "fused" (the twin on the ntm_ops kernel) or "standard" (ONNX operators only)
        self.engine, self.path = choose_engine(self.path, self.options.engine)
        try:
            self._start()
        except KernelUnavailable as err:
            fallback = standard_twin(self.path)
            if self.options.engine == "fused" or fallback == self.path or \
                    not fallback.is_file():
                raise ModelLoadError(f"{self.path}: {err}") from None
            warn_once(f"{err}; serving the standard models")
            self.engine, self.path = "standard", fallback
            self._open_sessions()
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            self.metadata = meta.decode(props, source=str(self.path))
            self.task: Task = task_from_metadata(self.metadata["ntm.task"])
        except (ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(str(err) if isinstance(err, ValueError)
                                 else f"{self.path}: malformed ntm metadata ({err})") from None
        export_info = self.metadata["ntm.export"]
        if export_info.get("ragged"):
            raise ModelLoadError(f"{self.path} is a Triton repository's model (ragged batches, "
                                 f"no attention); serve the ONNX export of the same run "
                                 f"(`ntm export --format onnx`) instead")
        self.fixed_length: int | None = export_info.get("length")
        self.model_config: dict = self.metadata["ntm.model"]
        # memory rows and attention, or neither (the LSTM baseline)
        self.parts = meta.ModelParts.of(self.model_config)
        self.name = name or self.parts.model_name(self.task.name)
        self._check_tensors()
        # Dynamic exports since memory growth take N per call; older and fixed-length exports
        # run at the N they were exported with.
        self.grows = self.parts.memory and meta.takes_memory_size(self.session)
        # Stateful exports (`ntm export --stateful`) also run a sequence in several calls.
        self.stateful: bool = bool(export_info.get("stateful"))
        memory = export_info.get("memory") or {}
        self.fixed_memory_size: int | None = (memory.get("fixed") or self.model_config[
            "memory_size"]) if self.parts.memory else None
        self._check_memory_options()

    def _check_tensors(self) -> None:
        """ModelLoadError unless the file has the input and outputs its metadata promises."""
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if meta.INPUT_NAME not in inputs or not set(self.parts.outputs) <= outputs:
            raise ModelLoadError(f"{self.path}: expected input '{meta.INPUT_NAME}' and outputs "
                                 + ", ".join(f"'{name}'" for name in self.parts.outputs))

    def _start(self) -> None:
        """Open the sessions; a fused model under a name that did not say so (not
        ``NAME.fused.onnx``) is found by onnxruntime's refusal and opened as fused."""
        try:
            self._open_sessions()
        except _NeedsKernel:
            if self.options.engine == "standard":
                raise ModelLoadError(f"{self.path} is a fused model (it needs the ntm_ops "
                                     f"kernel); --engine standard needs a standard export")
            self.engine = "fused"
            self._open_sessions()

    def _open_sessions(self) -> None:
        self.session = self._session(self.options.session_options())
        # Runs of many sequences on more intra-op threads (RuntimeOptions.large_batch_threads).
        self.large_session = (self._session(self.options.session_options(
            self.options.large_batch_threads)) if self.options.plans_large_batches else None)

    def _session(self, options):
        """An onnxruntime session of the file; ModelLoadError (one line) when it will not load,
        KernelUnavailable when the fused kernel does not (registered, or then found)."""
        if self.engine == "fused":
            register_kernel(options)
        try:
            return ort.InferenceSession(str(self.path), options,
                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises several private exception types
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            if "ai.ntm" in str(err):
                if self.engine == "standard":
                    raise _NeedsKernel() from None
                # an onnxruntime the library did not register with (older than it asks for)
                raise KernelUnavailable(f"onnxruntime {ort.__version__} did not take it: "
                                        f"{first}") from None
            raise ModelLoadError(f"{self.path} is not a loadable ONNX model: {first}") from None

    def close(self) -> None:
        """Release the onnxruntime sessions (the large-batch one too)."""
        self.session = None
        self.large_session = None

    def threads_for(self, batch: int) -> int:
        """Intra-op threads a run of ``batch`` sequences uses when they are all idle."""
        return self.options.threads_for(batch)

    def threads_used(self, batch: int, granted: int | None = None) -> int:
        """Intra-op threads a run of ``batch`` sequences uses when granted ``granted`` (None:
        all it wants): a large run's threads only when it was granted them all, else the
        single session's."""
        wanted = self.threads_for(batch)
        if self.large_session is not None and wanted == self.options.large_batch_threads \
                and (granted is None or granted >= wanted):
            return wanted
        return self.options.base_threads

    def _session_for(self, batch: int, granted: int | None):
        """The session that runs ``batch`` sequences with ``threads_used`` threads."""
        if self.large_session is not None and \
                self.threads_used(batch, granted) == self.options.large_batch_threads:
            return self.large_session
        return self.session

    def _rows_allowed(self, rows: int) -> bool:
        """Whether this model may run with ``rows`` memory rows: its fixed rows, or (when its
        memory grows) from the trained rows up to ``max_memory_size``."""
        if not self.grows:
            return rows == self.fixed_memory_size
        return self.trained_memory_size <= rows <= self.options.max_memory_size

    def _check_memory_options(self) -> None:
        requested, trained = self.options.memory_size, self.trained_memory_size
        if requested is not None and not self.parts.memory:
            raise ModelLoadError(f"{self.path}: --memory-size {requested}: this model is "
                                 f"{self.parts.network}, which has no memory rows")
        if requested is None or self._rows_allowed(requested):
            return
        if not self.grows:
            raise ModelLoadError(f"{self.path}: --memory-size {requested}: this model's memory "
                                 f"is fixed at {self.fixed_memory_size} rows (re-export it "
                                 f"with a current `ntm export` to choose rows per request)")
        raise ModelLoadError(f"{self.path}: --memory-size {requested} must lie between the "
                             f"{trained} rows the model was trained with and "
                             f"--max-memory-size {self.options.max_memory_size}")

    # -- description ------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.task.input_size

    @property
    def output_size(self) -> int:
        return self.task.output_size

    @property
    def num_heads(self) -> int:
        return self.model_config["num_read_heads"] + self.model_config["num_write_heads"]

    @property
    def trained_memory_size(self) -> int | None:
        """N the model was trained with (None: a model without memory)."""
        return self.model_config["memory_size"] if self.parts.memory else None

    def memory_size_for(self, rows_needed: int, field: str = "request") -> int | None:
        """The memory rows a request that must store ``rows_needed`` rows runs with (None: a
        model without memory).

        Unprocessable (422) naming the limit when it needs more than ``max_memory_size``.
        """
        if not self.grows:
            return self.fixed_memory_size
        if self.options.memory_size is not None:
            return self.options.memory_size
        try:
            return choose_memory_size(rows_needed, self.trained_memory_size,
                                      self.options.max_memory_size)
        except MemoryLimitExceeded as err:
            raise Unprocessable(f"{field}: {err}") from None

    def memory_size_for_inputs(self, x: np.ndarray, requested: int | None = None
                               ) -> int | None:
        """Rows for a raw input batch [batch, time, in]: ``requested`` (checked against the
        limits), else enough for any task input of that many time steps (None: a model
        without memory, which refuses ``requested``)."""
        if requested is not None and not self.parts.memory:
            raise BadRequest(f"{meta.MEMORY_SIZE_NAME}: model {self.name} is "
                             f"{self.parts.network}, which has no memory rows")
        if requested is None:
            return self.memory_size_for(self.task.memory_rows_for_time_steps(x.shape[1]),
                                        "inputs")
        if self._rows_allowed(requested):
            return requested
        if not self.grows:
            raise Unprocessable(f"{meta.MEMORY_SIZE_NAME}: model {self.name} has a fixed "
                                f"memory of {self.fixed_memory_size} rows")
        raise Unprocessable(f"{meta.MEMORY_SIZE_NAME}: {requested} rows; model {self.name} "
                            f"takes {self.trained_memory_size} to "
                            f"{self.options.max_memory_size}")

    @property
    def max_time_steps(self) -> int:
        return self.fixed_length or self.options.max_time_steps

    def describe(self) -> dict[str, Any]:
        """Name, task, mode, limits and the training figures, for listings and endpoints."""
        training = self.metadata["ntm.training"]
        return {
            "name": self.name,
            "task": self.task.name,
            "architecture": self.model_config.get("architecture", "ntm"),
            "path": str(self.path),
            "engine": self.engine,
            "mode": self.metadata["ntm.export"]["mode"],
            "fixed_length": self.fixed_length,
            "max_time_steps": self.max_time_steps,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "heads": self.metadata["ntm.export"]["heads"],  # None without memory
            "memory": [self.trained_memory_size, self.model_config["memory_width"]]
            if self.parts.memory else None,
            "memory_sizes": self._memory_sizes(),
            "train_lengths": self.task.train_lengths,
            "train_repeats": self.task.train_repeats,
            "training_step": training.get("step"),
            "training_sequences": training.get("sequences"),
            "heldout_bits_per_seq": training.get("heldout_bits_per_seq"),
        }

    def _memory_sizes(self) -> str | None:
        """The rows requests run with, in words (None: a model without memory)."""
        if not self.parts.memory:
            return None
        if self.grows and self.options.memory_size is None:
            return f"{self.trained_memory_size}..{self.options.max_memory_size}, chosen per request"
        return str(self.options.memory_size or self.fixed_memory_size)

    # -- arrays -----------------------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Validate a raw input tensor; returns float32 [batch, time, input_size]."""
        x = np.asarray(inputs)
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.number):
                raise BadRequest(f"inputs must be numbers, got dtype {x.dtype}")
            x = x.astype(np.float32)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise BadRequest(f"inputs must have shape [batch, time, {self.input_size}], "
                             f"got {list(x.shape)}")
        if x.shape[0] < 1:
            raise BadRequest("inputs must hold at least one sequence (batch >= 1)")
        if x.shape[1] < 1:
            raise BadRequest("inputs must hold at least one time step: empty sequences are "
                             "not valid")
        if x.shape[1] > self.max_time_steps:
            what = "this fixed-length model's length" if self.fixed_length else "the limit"
            raise Unprocessable(f"inputs have {x.shape[1]} time steps; {what} is "
                                f"{self.max_time_steps}")
        if not np.isfinite(x).all():
            raise BadRequest("inputs must be finite (no NaN or Inf)")
        return x

    def run(self, inputs: Any, memory_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """inputs [batch, time, in] -> (probabilities [batch, time, out],
        attention [batch, time, heads, N] or None without memory); a fixed-length model pads
        and trims.

        N = ``memory_size`` [default: ``memory_size_for_inputs``]; ignored by a model whose
        memory is fixed.
        """
        return self.run_checked(self.check_inputs(inputs), memory_size)

    def run_checked(self, x: np.ndarray, memory_size: int | None = None,
                    threads: int | None = None, attention: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``run`` for inputs that ``check_inputs`` (or a task's encoder) already validated:
        float32 [batch, time, in]. The data plane checks once, on the way in, and says how
        many ``threads`` its ``ThreadBudget`` granted [None: ``threads_for`` the batch].
        ``attention`` False: the attention output is not fetched (None in its place): a run
        that does not copy it out is cheaper; a model without memory has none to fetch."""
        time_steps = x.shape[1]
        if self.fixed_length and time_steps < self.fixed_length:
            x = np.pad(x, ((0, 0), (0, self.fixed_length - time_steps), (0, 0)))
        feeds = {meta.INPUT_NAME: x}
        if self.grows:
            n = memory_size or self.memory_size_for_inputs(x)
            feeds[meta.MEMORY_SIZE_NAME] = np.array([n], np.int32)
        try:
            session = self._session_for(len(x), threads)
            probs, *rest = session.run(self._fetched(attention), feeds)
        except Exception as err:
            raise InferenceFailed(f"model {self.name} failed: {str(err).splitlines()[0][:200]}") \
                from None
        return probs[:, :time_steps], (rest[0][:, :time_steps] if rest else None)

    def _fetched(self, attention: bool) -> list[str]:
        """The outputs a run fetches: the probabilities, and the attention when wanted and
        the model has it."""
        wanted = attention and self.parts.attention
        return [meta.PROBABILITIES, meta.ATTENTION] if wanted else [meta.PROBABILITIES]

    def run_in_sequence(self, x: np.ndarray, memory_size: int | None, state: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One piece of a sequence on a stateful model: checked inputs [batch, time, in] from
        ``state`` [batch, S] (None: the sequence starts here, with ``memory_size`` rows; None
        rows without memory) -> (probabilities, attention or None, the state after its last
        step)."""
        from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME

        feeds = {meta.INPUT_NAME: x, START_NAME: np.array([int(state is None)], np.int32)}
        if self.parts.memory:
            feeds[meta.MEMORY_SIZE_NAME] = np.array([memory_size], np.int32)
        if state is not None:
            feeds[STATE_NAME] = state
        try:
            probs, *attention, state_out = self.session.run(
                self._fetched(True) + [STATE_OUT_NAME], feeds)
        except Exception as err:
            raise InferenceFailed(f"model {self.name} failed: {str(err).splitlines()[0][:200]}") \
                from None
        return probs, (attention[0] if attention else None), state_out
