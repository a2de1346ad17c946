"""Which worker of a `tf.distribute` cluster this process is."""

import tensorflow as tf


def is_chief(strategy=None):
    """Whether this process is the chief worker of `strategy`'s cluster.

    The chief is the task of type `"chief"` when the cluster has one, else
    worker 0 (TensorFlow's convention for `MultiWorkerMirroredStrategy`). A
    single-process strategy (default, `MirroredStrategy`, `OneDeviceStrategy`)
    has no cluster: its one process is the chief. The chief is the worker that
    writes checkpoints and prints progress in `keras_transfer.distribute.fit`.

    Args:
        strategy: a `tf.distribute.Strategy`, or None for the current one
            (`tf.distribute.get_strategy()`).

    Returns:
        bool.

    Raises:
        ValueError: if `strategy` is neither None nor a `tf.distribute.Strategy`.

    Example:

    >>> import tensorflow as tf
    >>> keras_transfer.distribute.is_chief(tf.distribute.get_strategy())
    True
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(f"`strategy` must be a `tf.distribute.Strategy` or None. Received: strategy={strategy!r}")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    return _is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def _is_chief_task(task_type, task_id, cluster):
    if task_type == "chief":
        return True
    return task_type == "worker" and "chief" not in cluster and int(task_id or 0) == 0
