"""Cross-entropy over the selected positions only: the cloze (masked language model) loss.

For token ids `t`, logits `z` over the vocabulary and a 0/1 selection `s` (the positions
`keras_transfer.ops.mask_tokens` chose), the loss is

    L = sum_{b, i} s_bi * CE(t_bi, z_bi) / sum_{b, i} s_bi,

the mean over the selected positions (0 when none is selected). Keras's
`SparseCategoricalCrossentropy` with `sample_weight=s` divides by every position
instead, so the loss would shrink with the mask rate and the padding. Computed in
float32 (float64 for float64 logits) whatever the dtype policy.

Reference:
    Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional
    Transformers for Language Understanding", NAACL 2019 (§3.1: cross-entropy on the
    masked positions only).
"""

import keras
from keras import ops

from keras_transfer.ops.numerics import compute_dtype


def masked_token_loss(token_ids, logits, selected, from_logits=True):
    """Mean cross-entropy of the original ids over the selected positions.

    Args:
        token_ids: int tensor `(batch, length)`, the original ids.
        logits: float tensor `(batch, length, vocabulary_size)` (probabilities with
            `from_logits=False`).
        selected: `(batch, length)`, 1 where the loss counts, 0 elsewhere.
        from_logits: whether `logits` are logits.

    Returns:
        A scalar tensor (float32, or float64 for float64 logits).

    Raises:
        ValueError: if the shapes do not match.

    Example:

    >>> ids = np.array([[2, 3]])
    >>> logits = np.log(np.array([[[0.1, 0.1, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]]]) + 1e-12)
    >>> float(keras_transfer.losses.masked_token_loss(ids, logits, np.array([[1.0, 0.0]]))).__round__(4)
    0.2231
    """
    logits, token_ids = ops.convert_to_tensor(logits), ops.convert_to_tensor(token_ids)
    dtype = compute_dtype(logits)
    # Static dimensions only: a dynamic batch (a partial last batch in a graph) is not a mismatch.
    known = [(a, b) for a, b in zip(token_ids.shape, logits.shape[:2]) if a is not None and b is not None]
    if len(logits.shape) != 3 or len(token_ids.shape) != 2 or any(a != b for a, b in known):
        raise ValueError(
            "`logits` must be (batch, length, vocabulary_size) for `token_ids` of shape (batch, length). "
            f"Received: token_ids.shape={tuple(token_ids.shape)}, logits.shape={tuple(logits.shape)}"
        )
    losses = keras.losses.sparse_categorical_crossentropy(token_ids, ops.cast(logits, dtype), from_logits=from_logits)
    selected = ops.cast(ops.reshape(selected, ops.shape(losses)), dtype)
    return ops.sum(losses * selected) / ops.maximum(ops.sum(selected), 1.0)


@keras.saving.register_keras_serializable(package="keras_transfer")
class MaskedTokenLoss(keras.losses.Loss):
    """`masked_token_loss` as a `keras.losses.Loss`.

    `y_true` holds the ids, `y_pred` the logits and `sample_weight` the selection
    (every position when None).

    Args:
        from_logits: whether `y_pred` are logits.
        name: the loss name.

    Example:

    >>> loss = keras_transfer.losses.MaskedTokenLoss()
    >>> ids = np.array([[2, 3]])
    >>> logits = np.zeros((1, 2, 4), "float32")
    >>> round(float(loss(ids, logits, sample_weight=np.array([[1.0, 0.0]]))), 4)  # log 4
    1.3863
    """

    def __init__(self, from_logits=True, name="masked_token_loss"):
        super().__init__(name=name, reduction=None, dtype="float32")
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None:
            sample_weight = ops.ones(ops.shape(y_true), "float32")
        return masked_token_loss(y_true, y_pred, sample_weight, from_logits=self.from_logits)

    def call(self, y_true, y_pred):
        return masked_token_loss(y_true, y_pred, ops.ones(ops.shape(y_true), "float32"), self.from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name}
