"""Settings, each default in one place: ``RuntimeOptions`` (one model's onnxruntime session and
limits) and ``ServerSettings`` (one server process). ``ntm serve`` and ``ntm predict`` take
their options' defaults from here, so this module stays light: importing it imports neither
onnxruntime nor a web framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ntm.contract.memory_plan import DEFAULT_MAX_MEMORY_SIZE

DEFAULT_MAX_TIME_STEPS = 4096  # documented limit for dynamic models (a copy of 2047 vectors)
DEFAULT_MAX_INSTANCES = 256  # requests in one v1 envelope or input file


@dataclass(frozen=True)
class RuntimeOptions:
    """onnxruntime session settings.

    intra_op_threads: threads inside one operator (1 suits this small model at small batches:
        the per-step ops are too small to split; measured, see README). 0 lets onnxruntime
        choose.
    large_batch_threads: intra-op threads for a run of at least ``large_batch_from``
        sequences, on a second session (1: one session for every batch, the default). Measured
        on 2 cores, in process: 1.16-1.27x at batch 32, 1.31-1.32x at 64, but only with
        onnxruntime's spinning worker threads (without: 0.87-0.89x), which burn CPU the other
        runs could use; a server grants them only while they are idle (``ThreadBudget``): one
        client's 64-sequence requests 1.12-1.20x faster, 32 clients 0.97-1.07x (three runs).
    large_batch_from: the smallest run that gets ``large_batch_threads``.
    graph_optimization: "disable", "basic", "extended" or "all".
    max_time_steps: longest input accepted by a dynamic-length model.
    memory_size: memory rows for every request [None: chosen per request].
    max_memory_size: most memory rows a request may be given (more: 422).
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    large_batch_threads: int = 1
    large_batch_from: int = 32
    graph_optimization: str = "all"
    max_time_steps: int = DEFAULT_MAX_TIME_STEPS
    memory_size: int | None = None
    max_memory_size: int = DEFAULT_MAX_MEMORY_SIZE

    def __post_init__(self) -> None:
        if self.large_batch_threads < 1 or self.large_batch_from < 1:
            raise ValueError(f"large_batch_threads and large_batch_from must be at least 1, got "
                             f"{self.large_batch_threads} and {self.large_batch_from}")

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
    """One server process: HTTP limits, batching, the key (each model's limits, such as the
    longest sequence, are its RuntimeOptions)."""

    max_body_bytes: int = 8 * 1024 * 1024  # larger bodies are answered 413
    max_batch_size: int = 64  # sequences per onnxruntime run, and per request
    max_queue_delay_ms: float = 2.0  # how long a batch waits to fill
    batching: bool = True  # dynamic batching on/off
    max_instances: int = DEFAULT_MAX_INSTANCES  # requests in one V1 envelope
    api_key: str | None = None  # when set, every endpoint but health needs it
    max_sequences: int = 1000  # live sequences of stateful models kept at once (more: 429)
    sequence_idle_s: float = 300.0  # a sequence idle this long is dropped
    access_log: str = "text"  # one line per request: "text", "json" or "off"
    grpc_port: int = 0  # the V2 gRPC service's port (0: none; ``--grpc-port``)
    grpc_host: str = "127.0.0.1"  # where it listens (the HTTP server's host)
    graceful_timeout_s: float = 30.0  # SIGTERM waits this long for calls in flight
    inference_threads: int = 2  # threads running onnxruntime, shared by every run (a large
    # batch may hold the idle ones: ThreadBudget); also how many merged batches of one model
    # run at once (a second only when the waiting requests fill it: ``Batcher``)
