"""Prometheus metrics of one server, in a registry of its own (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests (answered and in flight), failures, latency, queue time, batch sizes and
    inference time, per model."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ntm_requests", "Requests answered, by model, protocol, status.",
                                ["model", "protocol", "status"], registry=r)
        self.in_flight = Gauge("ntm_requests_in_flight",
                               "Inference requests received and not yet answered.",
                               ["model", "protocol"], registry=r)
        self.failures = Counter("ntm_request_failures", "Requests answered with an error.",
                                ["model", "protocol", "kind"], registry=r)
        self.latency = Histogram("ntm_request_latency_seconds", "Request latency.",
                                 ["model", "protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("ntm_queue_time_seconds",
                                    "Time a request waited for its batch to start.", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("ntm_batch_size", "Sequences per onnxruntime run.",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("ntm_inference_seconds", "Time of one onnxruntime run.",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.runs = Counter("ntm_inference_runs", "Merged batches run, by model and the "
                            "intra-op threads they ran on (a large batch gets the idle ones).",
                            ["model", "threads"], registry=r)
        self.sequences = Counter("ntm_sequences", "Sequences run, by model, memory rows (empty "
                                 "for a model without memory) and whether they lay within the "
                                 "training range.",
                                 ["model", "memory_size", "within_training_range"], registry=r)

    def show_engines(self, runtimes) -> None:
        """``ntm_model_engine{model, engine} 1``: which engine answers each model (the fused
        kernel or standard operators)."""
        engine = Gauge("ntm_model_engine", "The engine each model runs on: fused (the ntm_ops "
                       "kernel) or standard (ONNX operators).", ["model", "engine"],
                       registry=self.registry)
        for r in runtimes:
            engine.labels(r.name, r.engine).set(1)

    def track_sequences(self, store) -> None:
        """Gauges read from a ``SequenceStore`` at each scrape (which drops expired ones)."""
        live = Gauge("ntm_live_sequences", "Sequences of stateful models kept between requests "
                     "(in memory only).", registry=self.registry)
        live.set_function(lambda: len(store))
        state = Gauge("ntm_sequence_state_bytes", "Bytes of state the live sequences hold.",
                      registry=self.registry)
        state.set_function(lambda: store.state_bytes)
        expired = Gauge("ntm_sequences_expired", "Sequences dropped after their idle timeout "
                        "since the server started.", registry=self.registry)
        expired.set_function(lambda: store.expired_total)

    def observe_sequences(self, model: str, memory_size: int | None, within: bool,
                          count: int = 1) -> None:
        rows = "" if memory_size is None else str(memory_size)
        self.sequences.labels(model, rows, str(within).lower()).inc(count)

    def observe_request(self, model: str, protocol: str, status: int, seconds: float) -> None:
        self.requests.labels(model, protocol, str(status)).inc()
        self.latency.labels(model, protocol).observe(seconds)
        if status >= 400:
            kind = "client" if status < 500 else "server"
            self.failures.labels(model, protocol, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
