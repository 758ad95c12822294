"""Server settings: one frozen dataclass, filled by ``ntm serve`` and read by the app."""

from __future__ import annotations

from dataclasses import dataclass

from ntm.serving.requests import DEFAULT_MAX_INSTANCES
from ntm.serving.runtime import DEFAULT_MAX_TIME_STEPS


@dataclass(frozen=True)
class ServerSettings:
    max_body_bytes: int = 8 * 1024 * 1024  # larger bodies are answered 413
    max_batch_size: int = 64  # sequences per onnxruntime run, and per request
    max_queue_delay_ms: float = 2.0  # how long a batch waits to fill
    batching: bool = True  # dynamic batching on/off
    max_time_steps: int = DEFAULT_MAX_TIME_STEPS  # longest sequence for dynamic models
    max_instances: int = DEFAULT_MAX_INSTANCES  # requests in one V1 envelope
    api_key: str | None = None  # when set, every endpoint but health needs it
    inference_threads: int = 2  # threads running onnxruntime (each run single-threaded); also
    # how many merged batches of one model run at once (the next forms while one runs)
