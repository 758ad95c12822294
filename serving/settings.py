"""Settings, each default in one place: ``RuntimeOptions`` (one model's onnxruntime session and
limits) and ``ServerSettings`` (one server process). ``ntm serve`` and ``ntm predict`` take
their options' defaults from here, so this module stays light: importing it imports neither
onnxruntime nor a web framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ntm.contract.fields import check_fields, setting
from ntm.contract.memory_plan import DEFAULT_MAX_MEMORY_SIZE

DEFAULT_MAX_TIME_STEPS = 4096  # a copy of 2047 vectors
DEFAULT_MAX_INSTANCES = 256  # requests in one v1 envelope or input file


@dataclass(frozen=True)
class RuntimeOptions:
    """One model's onnxruntime sessions and limits (``ntm serve``, ``ntm predict`` and
    ``ntm.load`` take them; the command lines generate their options from these fields)."""

    intra_op_threads: int = setting(
        1, "onnxruntime threads inside one operator (0: onnxruntime chooses; this model's "
           "per-step operators are too small to split).", flags=("--threads",), low=0)
    inter_op_threads: int = setting(1, "onnxruntime threads across operators.", low=0,
                                    cli=False)
    large_batch_threads: int = setting(
        1, "Intra-op threads for a merged batch of at least --large-batch-from sequences, on a "
           "second session, taken only while they are idle among --inference-threads (1: every "
           "run on one thread; measured in docs/performance.md).", low=1, high=64)
    large_batch_from: int = setting(32, "The smallest merged batch that gets "
                                        "--large-batch-threads.", low=1)
    graph_optimization: str = setting("all", "onnxruntime graph optimisation level.",
                                      choices=("disable", "basic", "extended", "all"), cli=False)
    max_time_steps: int = setting(DEFAULT_MAX_TIME_STEPS,
                                  "Longest sequence a dynamic-length model accepts.", low=1)
    memory_size: int | None = setting(
        None, "Memory rows for every request [default: per request, the smallest of the "
              "trained rows x 1, 2, 4, ... that holds it].", low=1)
    max_memory_size: int = setting(DEFAULT_MAX_MEMORY_SIZE,
                                   "Most memory rows a request may get; one that needs more is "
                                   "answered 422.", low=1)
    engine: str = setting(
        "auto", "fused: the model's fused twin on the ntm_ops kernel (`ntm build-kernel`); "
                "standard: ONNX operators only; auto: fused when the kernel loads and the "
                "model has a twin, else standard (with one warning when the kernel fails).",
        choices=("auto", "fused", "standard"))

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def plans_large_batches(self) -> bool:
        """True when large runs get more intra-op threads than the rest (a second session)."""
        return 0 < self.intra_op_threads < self.large_batch_threads

    @property
    def base_threads(self) -> int:
        """Intra-op threads of the session every run that is not large uses."""
        return self.intra_op_threads or os.cpu_count() or 1  # 0: onnxruntime takes every core

    def threads_for(self, batch: int) -> int:
        """Intra-op threads a run of ``batch`` sequences would use given every idle thread."""
        if self.plans_large_batches and batch >= self.large_batch_from:
            return self.large_batch_threads
        return self.base_threads

    def session_options(self, intra_op_threads: int | None = None):
        """These settings as ``onnxruntime.SessionOptions`` [with ``intra_op_threads``
        instead of the field's: the large-batch session]."""
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {sorted(levels)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = (self.intra_op_threads if intra_op_threads is None
                                        else intra_op_threads)
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = levels[self.graph_optimization]
        options.log_severity_level = 3
        return options


@dataclass(frozen=True)
class ServerSettings:
    """One server process: HTTP limits, batching, threads, sequences, the key, the log (each
    model's own limits are its RuntimeOptions); ``ntm serve`` generates its options from
    these fields."""

    max_body_bytes: int = setting(8 * 1024 * 1024, "Larger request bodies get 413.", low=1024)
    max_batch_size: int = setting(64, "Most sequences merged into one run (and per request).",
                                  low=1, high=4096)
    max_queue_delay_ms: float = setting(2.0, "How long a batch waits for more requests.",
                                        low=0, high=1000)
    batching: bool = setting(True, "Merge concurrent requests into one run (--no-batching: "
                                   "run every request alone).", flags=("--batching/--no-batching",))
    max_instances: int = setting(DEFAULT_MAX_INSTANCES, "Requests in one V1 envelope.", low=1,
                                 cli=False)
    api_key: str | None = setting(
        None, "Require this key (Authorization: Bearer KEY, or X-API-Key; gRPC: the same "
              "metadata) on every endpoint but health. Also read from NTM_API_KEY.",
        envvar="NTM_API_KEY")
    inference_threads: int = setting(
        2, "Threads running onnxruntime; also how many merged batches of a model run at once (a "
           "second only when the waiting requests fill it).", low=1, high=64)
    max_sequences: int = setting(
        1000, "Most live sequences (requests with sequence_id on a model exported with "
              "--stateful) kept at once; one more is answered 429. 0: no sequences.", low=0)
    sequence_idle_s: float = setting(
        300.0, "Drop a sequence idle this many seconds (its state lives in memory only).",
        low=0, low_open=True)
    grpc_port: int = setting(
        0, "Also serve the V2 protocol over gRPC (KServe's and Triton's "
           "inference.GRPCInferenceService) on this port, same host; 0: off, as it needs the "
           "[grpc] extra and a second port nobody asked for (Triton's is 8001).",
        low=0, high=65535)
    grpc_host: str = setting("127.0.0.1", "Where gRPC listens (the HTTP server's --host).",
                             cli=False)
    access_log: str = setting("text", "One line per request on stderr (method, path, model, "
                                      "status, ms, request id): for people, as JSON lines for "
                                      "machines, or none.", choices=("text", "json", "off"))
    graceful_timeout_s: float = setting(30.0, "Seconds SIGTERM waits for in-flight requests.",
                                        flags=("--graceful-timeout",), low=0)

    def __post_init__(self) -> None:
        check_fields(self)
