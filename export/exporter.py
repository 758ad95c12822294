"""``ntm export``'s engine: run directory -> verified SavedModel, ONNX or Triton repository."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx
import tensorflow as tf

import ntm
from ntm.contract import metadata as meta
from ntm.contract.metadata import EXPORTS_ROOT
from ntm.export.signatures import ExportModule, RowsTable
from ntm.contract.errors import NtmError
from ntm.contract.memory_plan import (DEFAULT_MAX_MEMORY_SIZE, MemoryLimitExceeded,
                                      choose_memory_size)
from ntm.contract.tasks import Difficulty
from ntm.contract.metadata import ModelParts
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.export.verify import (CHUNK_TOLERANCE, CHUNKS, NOISE_FACTOR, PERTURBATION, TOLERANCE,
                               Comparison, chunked, compare, noise_floor, one_shot,
                               verification_points)
from ntm.export import fused, triton
from ntm.export.writers import convert_to_onnx, replace_path, set_metadata, write_savedmodel
from ntm.training.runs import Run, read_summary

FORMATS = ("savedmodel", "onnx", "triton")
KERNELS = ("standard", "fused")  # standard operators (a Loop), or the ntm_ops library's one op
DEFAULT_OPSET = 17


class ExportError(RuntimeError, NtmError):
    """The export cannot be made or failed its proof; the message says why."""


@dataclass
class ExportResult:
    path: Path
    format: str
    mode: str
    files: list[tuple[Path, int]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max((c.probabilities_diff for c in self.comparisons), default=0.0)


def default_output(name: str, fmt: str, length: int | None, kernel: str = "standard") -> Path:
    """exports/NAME/NAME.onnx (fused: NAME.fused.onnx, the twin ntm serve looks for beside it),
    exports/NAME/savedmodel, exports/triton (with -fixedN suffixes); NAME is the model's
    (``ModelParts.model_name``: the task's, or TASK-lstm for the LSTM baseline)."""
    suffix = f"-fixed{length}" if length is not None else ""
    if fmt == "onnx":
        twin = ".fused" if kernel == "fused" else ""
        return EXPORTS_ROOT / name / f"{name}{suffix}{twin}.onnx"
    if fmt == "savedmodel":
        return EXPORTS_ROOT / name / f"savedmodel{suffix}"
    return EXPORTS_ROOT / "triton"


def fixed_memory_size(task, length: int, trained: int, requested: int | None = None) -> int:
    """The rows of a fixed-length export: ``requested``, else the smallest bucket that holds the
    longest request fitting in ``length`` steps (``ntm.contract.memory_plan``)."""
    if requested is not None:
        if requested < trained:
            raise ExportError(f"--memory-size {requested} is below the {trained} rows the model "
                              f"was trained with")
        return requested
    try:
        return choose_memory_size(task.memory_rows_for_time_steps(length), trained,
                                  max(DEFAULT_MAX_MEMORY_SIZE, trained))
    except MemoryLimitExceeded as err:
        raise ExportError(f"--length {length}: {err}; pass --memory-size") from None


def check_options_apply(parts: ModelParts, memory_size: int | None,
                        max_memory_size: int | None, kernel: str) -> None:
    """ExportError naming the first option that means nothing to the network (the LSTM
    baseline has no memory: no rows to fix or bound, no fused memory kernel)."""
    if parts.memory:
        return
    why = f"{parts.network} has no memory"
    if memory_size is not None:
        raise ExportError(f"--memory-size: {why} rows to fix")
    if max_memory_size is not None:
        raise ExportError(f"--max-memory-size: {why} to grow")
    if kernel == "fused":
        raise ExportError(f"--kernel fused: the fused kernel runs the NTM's memory and heads "
                          f"in one op; {why} (export it with --kernel standard)")


def export_run(run: Run | Path, fmt: str, length: int | None = None, opset: int = DEFAULT_OPSET,
               out: Path | None = None, model_name: str | None = None,
               memory_size: int | None = None, stateful: bool = False,
               max_memory_size: int | None = None,
               triton_settings: triton.TritonSettings = triton.TritonSettings(),
               kernel: str = "standard") -> ExportResult:
    """Export the latest checkpoint of ``run`` (a ``Run``, or its directory); verify against
    TensorFlow before replacing anything at ``out``. Raises ExportError (with the measured
    difference) when the proof fails.

    A dynamic-length export takes its memory rows per call (input ``memory_size``); a
    fixed-length one has ``memory_size`` rows [default: what its length needs].

    ``stateful``: the model also takes and returns the state a sequence has reached, so a
    sequence can run in several calls (``ntm.export.signatures``); its proof runs every point in
    CHUNKS calls against TensorFlow in one, and against itself in one (within CHUNK_TOLERANCE).

    ``max_memory_size``: the most rows a model that chooses its own rows (``memory_size`` 0, or
    a Triton model) gives an input [default: DEFAULT_MAX_MEMORY_SIZE]. ``triton_settings``:
    scheduling and threads of a Triton entry (``ntm.export.triton``).

    A run of the LSTM baseline exports the same way, without memory (``ModelParts``: no
    ``memory_size`` input, no ``attention`` output); ``memory_size``, ``max_memory_size`` and
    the fused kernel are refused for it (``check_options_apply``).

    ``kernel="fused"``: the model is one node of the ``ntm_ops`` library (``ntm.export.fused``),
    proven like the standard one with the library registered; a Triton entry gets the library
    beside its model and ``model_operations`` naming it.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if kernel not in KERNELS:
        raise ExportError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if kernel == "fused" and fmt == "savedmodel":
        raise ExportError("--kernel fused is an ONNX model (--format onnx or triton); a "
                          "SavedModel runs TensorFlow's own operators")
    if kernel == "fused" and length is not None:
        raise ExportError("--kernel fused exports have a dynamic length (drop --length): the "
                          "kernel has no Loop to unroll")
    run = run if isinstance(run, Run) else Run.load(run)
    parts = ModelParts.of(run.model_config.to_dict())
    check_options_apply(parts, memory_size, max_memory_size, kernel)
    if kernel == "fused":
        from ntm.contract.kernel_library import KernelUnavailable, require_library
        try:
            require_library()
        except KernelUnavailable as err:
            raise ExportError(str(err)) from None
    if length is not None and length < 1:
        raise ExportError(f"--length must be 'dynamic' or an integer >= 1, got {length}")
    if stateful and length is not None:
        raise ExportError("--stateful needs a dynamic length: a sequence run in pieces has no "
                          "fixed number of time steps (drop --length)")
    if length is None and memory_size is not None:
        raise ExportError("--memory-size is for fixed-length exports (--length N); a dynamic "
                          "export takes its memory size per call")
    model, model_config, task = run.model, run.model_config, run.task
    max_memory_size = max_memory_size or DEFAULT_MAX_MEMORY_SIZE
    trained = model_config.memory_size if parts.memory else None
    rows = None if length is None or not parts.memory else \
        fixed_memory_size(task, length, trained, memory_size)
    points = verification_points(task, length, trained, rows)
    if length is not None and not points:
        shortest = task.time_steps(Difficulty(
            task.min_length, task.train_repeats[0] if task.train_repeats else None))
        raise ExportError(f"--length {length} is too short for {task.name}: its shortest "
                          f"sequence needs {shortest} time steps")
    table = RowsTable.for_task(task, trained, max_memory_size) if parts.memory else None
    module = ExportModule(model, length, rows, stateful=stateful, rows=table)
    mode = "dynamic" if length is None else "fixed"
    own_name = parts.model_name(task.name)
    out = Path(out) if out else default_output(own_name, fmt, length, kernel)
    name = model_name or (own_name.replace("-", "_") + (f"_fixed{length}" if length else ""))

    def reference(x, n):  # from a fresh start: (probabilities, attention or None)
        return _fetched(module.serve(*module.feeds(tf.constant(x), n)))[:2]

    def prove(candidate, inputs_alone: bool = False, at: list | None = None
              ) -> list[Comparison]:
        """``candidate``: a Forward, or for a stateful module a StatefulForward, at every
        point (or those ``at``); ``inputs_alone``: a Forward of ``inputs`` alone
        (``serving_default``), at the points with the trained rows."""
        if at is not None:
            return _prove(reference, candidate, task, at, length)
        if inputs_alone:
            at_trained = [p for p in points if p.memory_size == trained]
            return _prove(reference, candidate, task, at_trained, length)
        if not stateful:
            return _prove(reference, candidate, task, points, length)
        _prove_chunks(one_shot(candidate), chunked(candidate), task, points)
        return _prove(reference, chunked(candidate), task, points, length)

    workdir = Path(tempfile.mkdtemp(prefix=".ntm-export-", dir=_existing_parent(out)))
    try:
        if fmt == "savedmodel":
            tmp, final, files, comparisons = _savedmodel(module, workdir, out, prove)
        else:
            tmp, final, files, comparisons = _onnx(run, module, workdir, out, fmt, opset, name,
                                                   rows, prove, reference, points,
                                                   triton_settings, kernel, max_memory_size)
        replace_path(tmp, final)
        return ExportResult(final, fmt, mode, files, comparisons)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _fetched(outputs: dict) -> tuple:
    """(probabilities, attention or None) of a serving function's or signature's outputs, as
    NumPy; a stateful one's ``state_out`` third."""
    arrays = {name: value.numpy() for name, value in outputs.items()}
    fetched = (arrays[meta.PROBABILITIES], arrays.get(meta.ATTENTION))
    return fetched + ((arrays[STATE_OUT_NAME],) if STATE_OUT_NAME in arrays else ())


def _savedmodel(module: ExportModule, workdir: Path, out: Path, prove) -> tuple:
    """Write and prove a SavedModel in ``workdir`` -> (written, final path, files, proof).

    The full signature is proven like any export; ``serving_default`` (``inputs`` alone) must
    then give the same answers at the trained rows."""
    tmp = workdir / "savedmodel"
    write_savedmodel(module, tmp)
    signatures = tf.saved_model.load(str(tmp)).signatures
    full = signatures[module.full_signature]

    def candidate(x, n):
        return _fetched(full(**module.named_feeds(tf.constant(x), n)))

    def stateful_candidate(x, n, start, state):
        return _fetched(full(**module.named_feeds(tf.constant(x), n, start, state)))

    def default_candidate(x, n):
        return _fetched(signatures["serving_default"](**{meta.INPUT_NAME: tf.constant(x)}))[:2]

    comparisons = prove(stateful_candidate if module.stateful else candidate)
    if module.full_signature == "serving_default":
        return tmp, out, [(out, _size(tmp))], comparisons
    for c in prove(default_candidate, inputs_alone=True):
        comparisons.append(replace(c, label=f"{c.label}, inputs alone (serving_default)"))
    return tmp, out, [(out, _size(tmp))], comparisons


def _onnx(run: Run, module: ExportModule, workdir: Path, out: Path, fmt: str, opset: int,
          name: str, rows: int | None, prove, reference, points,
          settings: triton.TritonSettings, kernel: str = "standard",
          max_memory_size: int = DEFAULT_MAX_MEMORY_SIZE) -> tuple:
    """Convert, prove and write an ONNX model (alone, or as a Triton repository entry) in
    ``workdir``; the proof goes into its metadata -> (written, final path, files, proof)."""
    length, config = module.length, run.model_config
    ragged = fmt == "triton" and length is None and not module.stateful
    for_triton = fmt == "triton" and module.stateful
    defaults = triton.stateful_defaults(module.parts) if for_triton else module.input_defaults()
    if kernel == "fused":
        kind = "ragged" if ragged else "stateful" if module.stateful else "dynamic"
        proto = fused.fused_graph(fused.model_weights(module.model), config.to_dict(),
                                  module.rows, max_memory_size, kind, opset,
                                  None if ragged else defaults)
    elif ragged:
        proto = convert_to_onnx(triton.RaggedModule(module.model, module.rows), opset)
    else:
        proto = convert_to_onnx(module, opset, defaults)
    if for_triton:
        triton.prepare_stateful(proto)
    entries = _metadata(run, "dynamic" if length is None else "fixed", length, opset, rows,
                        module, ragged, kernel)
    set_metadata(proto, meta.encode(entries))
    onnx.checker.check_model(proto)
    if ragged:
        forward = _ragged_forward(proto)
        own = points_of_own_rows(run.task, points, module.rows)
        comparisons = _prove_ragged(reference, forward, run.task, module.rows, prove, own)
    else:
        comparisons = prove(_onnx_forward(proto, module))
    entries["ntm.export"]["verified"] = [c.as_dict() for c in comparisons]
    set_metadata(proto, meta.encode(entries))
    if fmt == "onnx":
        tmp = workdir / "model.onnx"
        onnx.save(proto, str(tmp))
        return tmp, out, [(out, tmp.stat().st_size)], comparisons
    tmp, final = workdir / name, out / name
    (tmp / "1").mkdir(parents=True)
    onnx.save(proto, str(tmp / "1" / "model.onnx"))
    operations = ""
    if kernel == "fused":  # the library travels with the model; Triton opens it by path
        from ntm.contract.kernel_library import LIBRARY_NAME, require_library
        shutil.copy2(require_library(), tmp / LIBRARY_NAME)
        operations = triton.model_operations(final.resolve() / LIBRARY_NAME)
    if ragged:
        text = triton.ragged_config(name, config.input_size, config.output_size, settings)
    elif module.stateful:
        text = triton.sequence_config(name, module.parts, config.input_size,
                                      config.output_size, config.num_heads, settings)
    else:
        text = triton.fixed_config(name, module.parts, config.input_size, config.output_size,
                                   config.num_heads, length, rows, settings)
    (tmp / "config.pbtxt").write_text(text + operations)
    files = [(final / p.relative_to(tmp), p.stat().st_size)
             for p in sorted(tmp.rglob("*")) if p.is_file()]
    return tmp, final, files, comparisons


def _ragged_forward(proto: onnx.ModelProto):
    """(sequences: a list of [batch, time, in] arrays) -> their probabilities, through one run
    of a Triton ragged model, as Triton's dynamic batcher would feed it."""
    import numpy as np

    session = _session(proto)

    def forward(sequences):
        flat = np.concatenate([x.reshape(-1) for x in sequences]).astype(np.float32)
        shapes = np.array([x.shape[1:] for x in sequences for _ in range(len(x))], np.int32)
        p = session.run([meta.PROBABILITIES], {meta.INPUT_NAME: flat,
                                               triton.ITEM_SHAPE_NAME: shapes})[0]
        out, offset = [], 0
        for x in sequences:
            steps = x.shape[0] * x.shape[1]
            out.append(p[offset: offset + steps].reshape(x.shape[0], x.shape[1], -1))
            offset += steps
        return out

    return forward


def points_of_own_rows(task, points: list, rows: RowsTable | None) -> list:
    """The proof points a model that always chooses its own rows can run (a Triton ragged
    model has no rows input): those whose rows are what ``rows`` (its table; None: a network
    without memory, every point) gives their time steps. Twice the longest training length at
    the trained rows drops out where it needs more (N-grams at 400 bits), and so does the grown
    graph's point at twice the rows where no length needs them (a task whose rows never grow)."""
    if rows is None:
        return points
    return [p for p in points
            if rows.rows_for_steps(task.time_steps(p.difficulty)) == p.memory_size]


def _prove_ragged(reference, forward, task, rows: RowsTable | None, prove, points
                  ) -> list[Comparison]:
    """A Triton ragged model, proven like any export at each of ``points`` (``prove(...,
    at=points)``; its rows are its own choice: the points' rows, checked; ``rows`` None: a
    network without memory), then with every
    point's sequences in one run (mixed lengths and rows) against the same sequences run
    alone."""
    import numpy as np

    def candidate(x, n):
        chosen = None if rows is None else rows.rows_for_steps(x.shape[1])
        if chosen != n:
            raise ExportError(f"the Triton model would run {x.shape[1]} time steps with "
                              f"{chosen} memory rows, the proof with {n}")
        return forward([x])[0], None

    comparisons = prove(candidate, at=points)
    inputs = [task.fixed_batch(np.random.default_rng([7, i]), 2, p.difficulty).inputs
              for i, p in enumerate(points)]
    together = forward(inputs)
    # Each point's sequences against their own tolerance: a batch sums in another order, and
    # where TensorFlow itself moves by more than 1e-4 on these sequences (long, chaotic ones)
    # they may move as much here. The record is the point nearest its tolerance.
    steps, batch = max(x.shape[1] for x in inputs), sum(len(x) for x in inputs)
    mixed = None
    for x, p in zip(inputs, together):
        n = None if rows is None else rows.rows_for_steps(x.shape[1])
        expected = reference(x, n)[0]
        here = Comparison(label="every point above in one ragged batch", time_steps=steps,
                          batch=batch, probabilities_diff=float(np.abs(expected - p).max()),
                          attention_diff=None,
                          noise_floor=noise_floor(reference, x, n, x.shape[1], expected))
        if mixed is None or (here.probabilities_diff / here.tolerance
                             > mixed.probabilities_diff / mixed.tolerance):
            mixed = here
    if not mixed.passed:
        raise ExportError(f"the Triton model's ragged batch differs from its sequences run alone "
                          f"by {mixed.probabilities_diff:.3g} (tolerance {mixed.tolerance:.3g}); "
                          f"nothing was written")
    return comparisons + [mixed]


def _prove(reference, candidate, task, points, length) -> list[Comparison]:
    comparisons = compare(reference, candidate, task, points, fixed_length=length)
    for c in comparisons:
        if not c.passed:
            raise ExportError(
                f"export does not match TensorFlow: output probabilities differ by "
                f"{c.probabilities_diff:.3g} at {c.label} (tolerance {c.tolerance:.3g}; "
                f"TensorFlow's own change there under a {PERTURBATION:g} input change: "
                f"{c.noise_floor:.3g}); "
                f"nothing was written")
    return comparisons


def _prove_chunks(whole, pieces, task, points) -> None:
    """The export run in CHUNKS calls per sequence agrees with itself run in one."""
    for c in compare(whole, pieces, task, points):
        worst = max(c.probabilities_diff, c.attention_diff or 0.0)
        if worst > CHUNK_TOLERANCE:
            raise ExportError(
                f"the stateful export run in {CHUNKS} calls differs from one call by "
                f"{worst:.3g} at {c.label} (tolerance {CHUNK_TOLERANCE:g}); nothing was "
                f"written")


def _session(proto: onnx.ModelProto):
    import onnxruntime as ort

    from ntm.contract.kernel_library import register, uses_kernel

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # not the note that an input with a default is not folded
    if uses_kernel([o.domain for o in proto.opset_import]):
        register(options)
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _onnx_forward(proto: onnx.ModelProto, module: ExportModule):
    """The ONNX model as a Forward (a StatefulForward for a stateful module), fed what
    ``module``'s serving function takes and fetching what it gives."""
    session = _session(proto)
    names = list(module.parts.outputs)

    def forward(x, n):
        p, *a = session.run(names, module.named_feeds(x, n))
        return p, (a[0] if a else None)

    def stateful_forward(x, n, start, state):
        p, *a, s = session.run(names + [STATE_OUT_NAME], module.named_feeds(x, n, start, state))
        return p, (a[0] if a else None), s

    return stateful_forward if module.stateful else forward


def _metadata(run: Run, mode, length, opset, rows, module: ExportModule,
              ragged: bool = False, kernel: str = "standard") -> dict:
    import tf2onnx

    summary = read_summary(run.directory)
    model_config, train_config, state = run.model_config, run.train_config, run.state
    memory = module.parts.memory  # heads and memory are null for a network without memory
    return {
        "ntm.task": run.task.metadata(),
        "ntm.model": model_config.to_dict(),
        "ntm.training": {
            "step": int(state.step.numpy()),
            "sequences": int(state.sequences.numpy()),
            "elapsed_seconds": round(float(state.elapsed.numpy()), 1),
            "heldout_bits_per_seq": float(state.last_eval.numpy()),
            "seed": train_config.seed,
            "config": train_config.to_dict(),
            "stopped": summary.get("stopped"),
        },
        "ntm.export": {
            "mode": mode, "length": length, "input": meta.INPUT_NAME,
            "outputs": [meta.PROBABILITIES] if ragged else list(module.parts.outputs),
            # Triton's dynamic batcher with ragged inputs (ntm.export.triton): flat inputs and
            # outputs, one (time, width) row per sequence in ``item_shape``.
            "ragged": {"item_shape": triton.ITEM_SHAPE_NAME} if ragged else None,
            "heads": {"read": model_config.num_read_heads, "write": model_config.num_write_heads}
            if memory else None,
            # Memory rows: per call through the memory_size input (dynamic), or fixed.
            # (the rules for rows beyond the trained ones are in ntm.model.cell: grow_*)
            # memory_size <= 0 (and a ragged model always): the first bucket whose longest
            # input holds the call's time steps.
            "memory": {"input": meta.MEMORY_SIZE_NAME if rows is None and not ragged else None,
                       "trained": model_config.memory_size, "fixed": rows,
                       "buckets": module.rows.buckets, "longest_inputs": module.rows.longest}
            if memory else None,
            "tolerance": TOLERANCE, "noise_factor": NOISE_FACTOR,
            "perturbation": PERTURBATION,
            # A sequence may run in several calls (ntm.contract.state_layout); None: stateless.
            "stateful": {"start": START_NAME, "state": STATE_NAME, "state_out": STATE_OUT_NAME,
                         "proven_chunks": CHUNKS, "chunk_tolerance": CHUNK_TOLERANCE}
            if module.stateful else None,
            # "fused": one node of the ntm_ops library (kernels/, ntm.kernel), which a session
            # must register; "standard": ONNX operators only.
            "kernel": {"name": kernel, "domain": fused.DOMAIN, "op_version": fused.OP_VERSION}
            if kernel == "fused" else {"name": "standard"},
        },
        "ntm.versions": {"ntm": ntm.__version__, "tensorflow": tf.__version__,
                         "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                         "opset": opset},
    }


def _existing_parent(path: Path) -> Path:
    """The nearest existing ancestor directory (temporary files go beside the target, so the
    final rename stays on one filesystem)."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
