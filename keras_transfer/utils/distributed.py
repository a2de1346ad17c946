"""Cross-replica helpers for contrastive losses (shared by SimCLR, MoCo and CLIP).

Contrastive losses want their negatives to span the GLOBAL batch: every replica
gathers the embeddings of all replicas (keeping gradients), and the positives of
its local rows sit at `replica_offset(x) + arange(local_batch)` in the gathered
batch. Outside a multi-replica context (eager code, the default strategy, one
device) every function is the identity / offset 0, so one code path serves both.

Gradients: `tf.distribute.ReplicaContext.all_gather` has a registered gradient
(the upstream gradient is summed over replicas and sliced back), and the
optimizer sums the per-replica gradients. So a replica must differentiate its
LOCAL share of the global mean, `local_sum / global_count` (see `global_mean`),
and the summed gradient is exactly the gradient of the global-batch loss, also
when the replicas hold batches of different sizes (a final partial batch).

TF-only on purpose: TensorFlow's `tf.distribute` is the only distribution API of
this stack that runs a custom `train_step` in replica context (JAX and PyTorch have no `strategy.run`).
"""

import tensorflow as tf

from keras_transfer.utils import model_graph


def _replica_context():
    """The current multi-replica context, or None (default strategy / cross-replica)."""
    if not tf.distribute.in_cross_replica_context():
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            return context
    return None


def num_replicas():
    """Number of replicas in sync (1 outside a multi-replica context)."""
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def all_gather_with_grad(x, axis=0):
    """Concatenates `x` from every replica along `axis`, keeping gradients.

    Replicas may hold different sizes along `axis` (a final partial batch); the
    result is ordered by replica id. Identity outside a multi-replica context.
    """
    x = tf.convert_to_tensor(x)
    context = _replica_context()
    if context is None:
        return x
    return context.all_gather(x, axis=axis)


def all_reduce_sum(x):
    """Sum of `x` over replicas (identity outside a multi-replica context)."""
    x = tf.convert_to_tensor(x)
    context = _replica_context()
    if context is None:
        return x
    return context.all_reduce(tf.distribute.ReduceOp.SUM, x)


def local_batch_size(x):
    """Size of the leading dimension of `x` as an int32 scalar tensor."""
    return tf.shape(x)[0]


def global_batch_size(x):
    """Sum of the leading dimensions of `x` over replicas (int32 scalar tensor)."""
    return all_reduce_sum(local_batch_size(x))


def replica_offset(x):
    """Row of this replica's first example in `all_gather_with_grad(x)`.

    Computed from the gathered per-replica sizes, so it is exact when the
    replicas hold batches of different sizes. 0 outside a multi-replica context.
    """
    context = _replica_context()
    if context is None:
        return tf.constant(0, dtype="int32")
    sizes = context.all_gather(tf.reshape(local_batch_size(x), (1,)), axis=0)
    replica_id = tf.cast(context.replica_id_in_sync_group, "int32")
    return tf.reduce_sum(sizes[:replica_id])


def global_batch_labels(x):
    """Positions of this replica's rows of `x` in the gathered global batch.

    `offset + range(local_batch)`: the positive-pair labels of a contrastive
    loss whose candidates are `all_gather_with_grad(...)`.
    """
    return replica_offset(x) + tf.range(local_batch_size(x), dtype="int32")


def global_mean(local_sum, local_count):
    """This replica's share of the global mean: `local_sum / sum_over_replicas(local_count)`.

    Differentiate this value inside the tape (the optimizer sums replica gradients);
    report `all_reduce_sum(global_mean(...))` (the full global mean) to metrics.
    """
    local_sum = tf.convert_to_tensor(local_sum)
    count = tf.cast(all_reduce_sum(tf.cast(local_count, "float32")), local_sum.dtype)
    return local_sum / count


def assign_identical(variables, values):
    """Assigns `values[i]` to `variables[i]`, values that every replica computed alike.

    In a multi-replica context the assignment runs once in cross-replica context
    (`merge_call` + `strategy.extended.update`, as Keras's optimizers do), each
    device's copy of a mirrored variable receiving its replica's value, so the copies
    stay in sync whatever the variable's aggregation (a replica-context `assign` to a
    variable with aggregation NONE is an error). Plain assignments otherwise.
    """
    variables, values = list(variables), list(values)
    context = _replica_context()
    if context is None:
        for variable, value in zip(variables, values):
            variable.assign(value)
        return

    def merge(strategy, values):
        for variable, value in zip(variables, values):
            # The tf.Variable (a MirroredVariable) under a Keras variable.
            variable = model_graph.backend_variable(variable)
            strategy.extended.update(variable, lambda var, new: var.assign(new), args=(value,), group=False)

    context.merge_call(merge, args=(values,))


def keras_loss_replicas(loss):
    """What a compiled Keras loss divides by under `tf.distribute`.

    Args:
        loss: the compiled loss object (or None).

    Returns:
        The number of replicas in sync for the mean reductions of
        `keras.losses.Loss` (and for None), 1 for the other reductions ("sum").
    """
    reduction = getattr(loss, "reduction", "sum_over_batch_size")
    if reduction not in ("sum_over_batch_size", "mean", "mean_with_sample_weight", "auto", None):
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync
