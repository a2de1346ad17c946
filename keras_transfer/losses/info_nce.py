"""InfoNCE: pick the positive key of a query out of a set of negative keys.

For a query q with positive key k+ and negative keys k_1 .. k_K the loss is the
cross-entropy of the positive among the K + 1 candidates,

    l(q) = -log( exp(q . k+ / t) / (exp(q . k+ / t) + sum_j exp(q . k_j / t)) ),

with the dot products of unit vectors (cosine similarities) when `normalize=True`.
The negatives are either shared by every query (a `(K, dim)` memory bank, as MoCo's
queue) or one set per query (`(batch, K, dim)`). Computed in float32 (float64 for
float64 inputs) whatever the dtype policy.

Reference:
    Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding",
    2018 (the InfoNCE loss, eq. 4); He, Fan, Wu, Xie & Girshick, "Momentum Contrast
    for Unsupervised Visual Representation Learning", CVPR 2020 (eq. 1: dot products
    of normalised embeddings over a temperature, negatives from a queue).
"""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils.validation import check_positive_float


def _compatible(a, b):
    return a is None or b is None or a == b


def _check_shapes(query, positive_key, negative_keys):
    if (
        len(query.shape) != 2
        or len(positive_key.shape) != 2
        or not all(_compatible(a, b) for a, b in zip(query.shape, positive_key.shape))
    ):
        raise ValueError(
            "`query` and `positive_key` must be 2-D (batch, dim) embeddings of the same shape "
            f"(row i of each is a positive pair). Received: query.shape={tuple(query.shape)}, "
            f"positive_key.shape={tuple(positive_key.shape)}"
        )
    rank = len(negative_keys.shape)
    if rank not in (2, 3) or not _compatible(query.shape[-1], negative_keys.shape[-1]):
        raise ValueError(
            "`negative_keys` must be (num_negatives, dim) keys shared by every query or "
            "(batch, num_negatives, dim) keys per query, with the embedding size of `query`. "
            f"Received: negative_keys.shape={tuple(negative_keys.shape)} for "
            f"query.shape={tuple(query.shape)}"
        )


def info_nce_terms(query, positive_key, negative_keys, temperature=0.07, normalize=True):
    """Per-query InfoNCE losses and top-1 hits.

    Args:
        query: `(batch, dim)` query embeddings.
        positive_key: `(batch, dim)` keys; row i is the positive of query i.
        negative_keys: `(num_negatives, dim)` keys shared by all queries, or
            `(batch, num_negatives, dim)` keys per query.
        temperature: positive float dividing the similarities.
        normalize: L2-normalise the three inputs first (cosine similarities); pass
            False for embeddings that are unit vectors already.

    Returns:
        `(losses, hits)`, each of shape `(batch,)`: the cross-entropy of the positive
        (column 0 of the logits `[q . k+, q . k_1, ...] / temperature`) and 1.0 where
        the positive has the highest similarity.
    """
    temperature = check_positive_float("temperature", temperature)
    query = ops.convert_to_tensor(query)
    positive_key = ops.convert_to_tensor(positive_key)
    negative_keys = ops.convert_to_tensor(negative_keys)
    _check_shapes(query, positive_key, negative_keys)
    dtype = compute_dtype(query)
    q, k, negatives = (ops.cast(t, dtype) for t in (query, positive_key, negative_keys))
    if normalize:
        q, k, negatives = (tf.math.l2_normalize(t, axis=-1) for t in (q, k, negatives))
    positive = ops.sum(q * k, axis=-1, keepdims=True)
    if len(negatives.shape) == 2:
        negative = ops.matmul(q, ops.transpose(negatives))
    else:
        negative = ops.einsum("bd,bkd->bk", q, negatives)
    logits = ops.concatenate([positive, negative], axis=1) / temperature
    losses = ops.logsumexp(logits, axis=1) - logits[:, 0]
    hits = ops.cast(ops.equal(ops.argmax(logits, axis=1), 0), dtype)
    return losses, hits


def info_nce(query, positive_key, negative_keys, temperature=0.07, normalize=True):
    """InfoNCE loss of a batch of queries: the mean over the queries.

    Args:
        query: `(batch, dim)` query embeddings (any float dtype).
        positive_key: `(batch, dim)` keys; row i is the positive of query i.
        negative_keys: `(num_negatives, dim)` keys shared by all queries (a memory
            bank such as MoCo's queue), or `(batch, num_negatives, dim)` per query.
        temperature: positive float dividing the similarities (0.07 in MoCo, 0.2 in
            MoCo v2).
        normalize: L2-normalise the inputs first (cosine similarities).

    Returns:
        A scalar float32 tensor (float64 for float64 inputs).

    Example:

    >>> import numpy as np
    >>> from keras_transfer.losses import info_nce
    >>> query = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> negative_keys = np.array([[0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(info_nce(query, query, negative_keys, temperature=1.0)), 4)
    0.6348
    """
    losses, _ = info_nce_terms(query, positive_key, negative_keys, temperature, normalize)
    return ops.mean(losses)


@keras.saving.register_keras_serializable(package="keras_transfer")
class InfoNCE(keras.losses.Loss):
    """InfoNCE as a `keras.losses.Loss`, with negatives per example.

    `y_pred` stacks, for each example, the query, its positive key and its
    negative keys: shape `(batch, 2 + num_negatives, dim)` (`y_true` is ignored,
    pass zeros). The per-example loss is `info_nce_terms(y_pred[:, 0], y_pred[:, 1],
    y_pred[:, 2:])`, so the default reduction is the mean over the queries and
    `sample_weight` weights them. For negatives shared by the batch (a memory bank)
    call `keras_transfer.losses.info_nce` instead.

    Args:
        temperature: positive float dividing the similarities.
        normalize: L2-normalise the embeddings first (cosine similarities).
        reduction: as in `keras.losses.Loss`, over the queries.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; defaults to float32 so the loss stays
            float32 under `mixed_float16`.

    Raises:
        ValueError: if `temperature` is not a positive number, or, when called, if
            `y_pred` is not `(batch, 2 + num_negatives, dim)` with a negative.

    Reference:
        Oord et al., "Representation Learning with Contrastive Predictive Coding",
        arXiv:1807.03748, 2018; He et al., "Momentum Contrast for Unsupervised Visual
        Representation Learning", CVPR 2020.

    Example:

    >>> import numpy as np
    >>> import keras_transfer
    >>> loss = keras_transfer.losses.InfoNCE(temperature=1.0)
    >>> query = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> negatives = np.array([[[0.0, 1.0]], [[-1.0, 0.0]]], "float32")
    >>> y_pred = np.concatenate([query[:, None], query[:, None], negatives], axis=1)
    >>> y_pred.shape
    (2, 3, 2)
    >>> round(float(loss(np.zeros(2), y_pred)), 4)
    0.3133
    """

    def __init__(self, temperature=0.07, normalize=True, reduction="sum_over_batch_size", name="info_nce", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.temperature = check_positive_float("temperature", temperature)
        self.normalize = bool(normalize)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_pred.shape) != 3 or y_pred.shape[1] is None or y_pred.shape[1] < 3:
            raise ValueError(
                "`y_pred` must have shape (batch, 2 + num_negatives, dim) with at least one "
                "negative: the query, its positive key and its negative keys stacked on axis 1. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        losses, _ = info_nce_terms(y_pred[:, 0], y_pred[:, 1], y_pred[:, 2:], self.temperature, self.normalize)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "normalize": self.normalize})
        return config
