"""NT-Xent: the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020).

For a batch of N positive pairs (z1_i, z2_i) there are 2N anchors. Anchor k with
positive p(k) has the loss

    l_k = -log( exp(sim(z_k, z_p(k)) / t) / sum_{j != k} exp(sim(z_k, z_j) / t) )

over the 2N - 1 other embeddings (1 positive, 2N - 2 negatives), sim the cosine
similarity; NT-Xent is the mean of l_k over the 2N anchors.

Written by hand: neither Keras, keras-hub nor keras-cv ship an NT-Xent loss.
Computed in float32 (float64 if given float64) whatever the dtype policy; the
self-similarity is removed with `where(..., -inf)` in float32, never with a
large constant that overflows in float16.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_positive_float

_FIX_BATCH = (
    "Contrastive losses need at least 2 pairs per (global) batch so that every anchor has a "
    "negative: use a batch size >= 2 and `drop_remainder=True` (or a dataset size that is not "
    "1 modulo the batch size)."
)


def _check_pair(z1, z2):
    if len(z1.shape) != 2 or len(z2.shape) != 2:
        raise ValueError(
            "`z1` and `z2` must be 2-D (batch, dim) embeddings. "
            f"Received: z1.shape={tuple(z1.shape)}, z2.shape={tuple(z2.shape)}"
        )
    if tuple(z1.shape) != tuple(z2.shape) and None not in tuple(z1.shape) + tuple(z2.shape):
        raise ValueError(
            "`z1` and `z2` must have the same shape (one row per positive pair). "
            f"Received: z1.shape={tuple(z1.shape)}, z2.shape={tuple(z2.shape)}"
        )


def check_view_pair(z1, z2):
    """`(z1, z2)` as tensors: 2-D, one shape, at least 2 rows where the batch size is static."""
    z1, z2 = ops.convert_to_tensor(z1), ops.convert_to_tensor(z2)
    _check_pair(z1, z2)
    if z1.shape[0] is not None and z1.shape[0] < 2:
        raise ValueError(
            "`z1` and `z2` must hold at least 2 pairs (the loss uses batch statistics). Received: batch size "
            f"{z1.shape[0]}. Use a batch size >= 2."
        )
    return z1, z2


def _check_batch(z1, global_size):
    static = z1.shape[0]
    if distributed.num_replicas() == 1 and static is not None:
        if static < 2:
            raise ValueError(f"`z1` and `z2` must hold at least 2 pairs. Received: batch size {static}. " + _FIX_BATCH)
        return []
    return [
        tf.debugging.assert_greater_equal(
            global_size,
            2,
            message="NT-Xent received a global batch of fewer than 2 pairs (no negatives). " + _FIX_BATCH,
        )
    ]


def nt_xent_terms(z1, z2, temperature=0.1, cross_replica=True):
    """Per-anchor NT-Xent losses and top-1 contrastive hits of this replica.

    Args:
        z1, z2: `(n, dim)` embeddings of the two views; row i of each is a pair.
        temperature: positive float.
        cross_replica: inside a `tf.distribute` replica context, take the
            candidates (positives and negatives) from the GLOBAL batch.

    Returns:
        `(losses, hits)`, each of shape `(2n,)`: rows 0..n-1 are the z1 anchors,
        rows n..2n-1 the z2 anchors; `hits` is 1.0 where the positive has the
        highest similarity among the 2N - 1 candidates.
    """
    temperature = check_positive_float("temperature", temperature)
    z1 = ops.convert_to_tensor(z1)
    z2 = ops.convert_to_tensor(z2)
    _check_pair(z1, z2)
    if tf.executing_eagerly():  # values at hand: a clear error instead of a NaN loss
        for name, z in (("z1", z1), ("z2", z2)):
            if not bool(tf.reduce_all(tf.math.is_finite(ops.cast(z, "float32")))):
                raise ValueError(
                    f"`{name}` must contain only finite values. Received: {name} with NaN or "
                    "infinite entries. Check the encoder inputs and the learning rate."
                )
    dtype = compute_dtype(z1)
    z1 = tf.math.l2_normalize(ops.cast(z1, dtype), axis=-1)
    z2 = tf.math.l2_normalize(ops.cast(z2, dtype), axis=-1)

    if cross_replica:
        all_z1 = distributed.all_gather_with_grad(z1)
        all_z2 = distributed.all_gather_with_grad(z2)
        labels = distributed.global_batch_labels(z1)
    else:
        all_z1, all_z2 = z1, z2
        labels = tf.range(tf.shape(z1)[0], dtype="int32")
    global_size = tf.shape(all_z1)[0]
    with tf.control_dependencies(_check_batch(z1, global_size)):
        anchors = ops.concatenate([z1, z2], axis=0)  # (2n, d)
    candidates = ops.concatenate([all_z1, all_z2], axis=0)  # (2N, d)
    logits = ops.matmul(anchors, ops.transpose(candidates)) / temperature  # (2n, 2N)

    self_index = ops.concatenate([labels, labels + global_size], axis=0)
    positive_index = ops.concatenate([labels + global_size, labels], axis=0)
    is_self = ops.one_hot(self_index, 2 * global_size, dtype="bool")
    masked = ops.where(is_self, ops.cast(float("-inf"), dtype), logits)
    positive = ops.take_along_axis(logits, positive_index[:, None], axis=1)[:, 0]
    losses = ops.logsumexp(masked, axis=1) - positive
    hits = ops.cast(ops.equal(ops.argmax(masked, axis=1), positive_index), dtype)
    return losses, hits


def nt_xent(z1, z2, temperature=0.1):
    """NT-Xent loss of a batch of positive pairs: mean over all 2N anchors.

    Args:
        z1: `(N, dim)` embeddings of the first augmented views (any float dtype;
            unnormalised is fine).
        z2: `(N, dim)` embeddings of the second views; row i of `z1` and of `z2` is a pair.
        temperature: positive float, the softmax temperature (0.1 in SimCLR).

    Returns:
        A scalar float32 tensor (float64 for float64 inputs).

    Raises:
        ValueError: if `temperature` is not positive, if `z1` and `z2` are not 2-D of
            the same shape, hold fewer than 2 pairs or non-finite values.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020.

    Example:

    >>> z1 = np.eye(4, 8, dtype="float32")  # four orthogonal embeddings
    >>> round(float(keras_transfer.losses.nt_xent(z1, z1, temperature=0.5)), 3)  # log(1 + 6 / e**2)
    0.594
    """
    losses, _ = nt_xent_terms(z1, z2, temperature=temperature, cross_replica=False)
    return ops.mean(losses)


@keras.saving.register_keras_serializable(package="keras_transfer")
class NTXent(keras.losses.Loss):
    """NT-Xent as a `keras.losses.Loss`.

    `y_pred` stacks the two views: shape `(batch, 2, dim)` (`y_true` is
    ignored, pass zeros). The per-sample loss of pair i is the mean of its two
    anchor losses, so the default reduction gives the mean over the 2N anchors
    and `sample_weight` weights pairs.

    Args:
        temperature: positive float, the softmax temperature (0.1 in SimCLR).
        reduction: as in `keras.losses.Loss`, over the pairs.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; defaults to float32 so the loss stays
            float32 under `mixed_float16`.

    Raises:
        ValueError: if `temperature` is not a positive number, or, when called, if
            `y_pred` is not `(batch, 2, dim)`.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020.

    Example:

    >>> z1 = np.eye(4, 8, dtype="float32")
    >>> y_pred = np.stack([z1, z1], axis=1)
    >>> y_pred.shape
    (4, 2, 8)
    >>> round(float(keras_transfer.losses.NTXent(temperature=0.5)(np.zeros(4), y_pred)), 3)
    0.594
    """

    def __init__(self, temperature=0.1, reduction="sum_over_batch_size", name="nt_xent", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.temperature = check_positive_float("temperature", temperature)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_pred.shape) != 3 or y_pred.shape[1] != 2:
            raise ValueError(
                "`y_pred` must have shape (batch, 2, dim): the two views stacked on axis 1, "
                f"e.g. `ops.stack([z1, z2], axis=1)`. Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        losses, _ = nt_xent_terms(y_pred[:, 0], y_pred[:, 1], temperature=self.temperature, cross_replica=False)
        n = ops.shape(y_pred)[0]
        return 0.5 * (losses[:n] + losses[n:])

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
