"""Training on TensorFlow's own ``tf.distribute``: which strategy, over which devices.

``TrainConfig.strategy`` names one of:

    default       TensorFlow's default strategy: plain variables on one device, the
                  single-device training step (``ntm.training.steps.make_train_step``).
    mirrored      ``MirroredStrategy`` over this host's logical CPU devices, one replica each
                  (``configure_logical_cpus`` splits the CPU first).
    multi-worker  ``MultiWorkerMirroredStrategy`` over the cluster that TF_CONFIG describes,
                  one replica per worker on CPU, ring all-reduce over gRPC on loopback or a
                  network. Every worker runs ``ntm train`` with its own TF_CONFIG, e.g.
                  {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
                   "task": {"type": "worker", "index": 0}}

``batch_size`` stays the global batch: every replica trains on batch_size / replicas sequences
of it (``ntm.training.steps.make_replicated_train_step``). Library code here is handed the TF_CONFIG
text; it never reads the environment itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tensorflow as tf

from ntm.contract.fields import ConfigError
from ntm.training.config import STRATEGIES
from ntm.contract.errors import NtmError


def configure_logical_cpus(count: int) -> None:
    """Split the host's CPU into ``count`` logical devices, /cpu:0 ... /cpu:{count-1}.

    Must run before TensorFlow initialises its devices (before the first op or variable);
    raises RuntimeError afterwards. ``count == 1`` leaves the configuration alone.
    """
    if count == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


@dataclass(frozen=True)
class ClusterTask:
    """Where this process sits in a multi-worker cluster (parsed TF_CONFIG).

    cluster: job name -> "host:port" addresses, e.g. {"worker": ["127.0.0.1:12345", ...]}
    """

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int


TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def parse_tf_config(text: str | None) -> ClusterTask:
    """Read TF_CONFIG's JSON text; a ConfigError naming TF_CONFIG when it is missing or bad
    (its field: ``strategy``, the setting that needs it)."""
    if not text or not text.strip():
        raise ConfigError(f"multi-worker training needs TF_CONFIG, which is not set; give "
                          f"every worker its own, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'", "strategy")
    try:
        data = json.loads(text)
        cluster = {job: list(addresses) for job, addresses in data["cluster"].items()}
        task_type, task_index = data["task"]["type"], data["task"]["index"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"TF_CONFIG is malformed ({type(err).__name__}: {err}); expected "
                          f"e.g. '{TF_CONFIG_EXAMPLE}'", "strategy") from None
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ConfigError(f"TF_CONFIG's cluster lists no 'worker' (or 'chief') addresses: "
                          f"{cluster}", "strategy")
    if task_type not in cluster or not isinstance(task_index, int) \
            or not 0 <= task_index < len(cluster[task_type]):
        raise ConfigError(f"TF_CONFIG's task {task_type!r} index {task_index!r} is not in its "
                          f"cluster {cluster}", "strategy")
    return ClusterTask(cluster, task_type, task_index)


class ClusterError(RuntimeError, NtmError):
    """A multi-worker cluster cannot be joined (its address cannot be bound...): the machine's
    state, not the command, is at fault (exit code 1)."""


def make_strategy(name: str, tf_config: str | None = None) -> tf.distribute.Strategy:
    """The strategy ``name`` (one of ``STRATEGIES``) names.

    mirrored spans every logical CPU device (call ``configure_logical_cpus`` first for more
    than one). multi-worker joins the cluster in ``tf_config`` (TF_CONFIG's text): it must be
    created before any other TensorFlow op runs in the process.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices,
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi-worker":
        task = parse_tf_config(tf_config)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(task.cluster), task_type=task.task_type,
            task_id=task.task_index, rpc_layer="grpc")
        ring = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                             communication_options=ring)
        except tf.errors.OpError as err:  # e.g. this worker's address cannot be bound
            address = task.cluster[task.task_type][task.task_index]
            raise ClusterError(f"this worker ({task.task_type} {task.task_index} of TF_CONFIG, "
                               f"{address}) could not join the cluster: {err.message}; is "
                               f"{address} in use by another process?") from None
    raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}",
                      "strategy")


def is_replicated(strategy: tf.distribute.Strategy) -> bool:
    """True for the strategies that mirror variables over replicas (needing the replicated
    training step); False for the default strategy."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy,
                                 tf.distribute.MultiWorkerMirroredStrategy))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True where the run directory is written: always, except on multi-worker's non-chief
    workers (which checkpoint into a temporary directory instead)."""
    return strategy.extended.should_checkpoint


def replica_batch_size(batch_size: int, replicas: int) -> int:
    """Sequences per replica of a global batch; a ConfigError unless it splits evenly."""
    if batch_size % replicas:
        raise ConfigError(f"batch_size {batch_size} (the global batch) does not split evenly "
                          f"over {replicas} replicas; use a multiple of {replicas}",
                          "batch_size")
    return batch_size // replicas
