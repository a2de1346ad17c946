"""CLIP's symmetric contrastive loss (Radford et al., 2021, Fig. 3).

For a batch of N (image, text) pairs with unit-normalised embeddings I and T,
the logits are `L = logit_scale * I @ T^T` and the loss is the mean of the
cross-entropy over rows (image -> text, target i for row i) and over columns
(text -> image, target j for column j). `logit_scale` is the multiplier on
the cosine similarities, already exponentiated (as open_clip's `ClipLoss`
takes it): 1 / temperature, e.g. 1 / 0.07 at CLIP's initialisation.

Neither Keras nor keras-hub ships this loss (keras-hub's CLIP has the logits
head only), so it is written here from the formula.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_transfer.ops.numerics import cast_scalar
from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.ops.numerics import l2_normalize
from keras_transfer.ops.numerics import static_batch_size


def check_pair_embeddings(image_embeddings, text_embeddings):
    for name, value in (("image_embeddings", image_embeddings), ("text_embeddings", text_embeddings)):
        if len(value.shape) != 2:
            raise ValueError(
                f"`{name}` must be a 2-D tensor (batch, dim). Received: {name} with shape "
                f"{tuple(value.shape)}. Pool or flatten the encoder output first."
            )
    n_img, n_txt = static_batch_size(image_embeddings), static_batch_size(text_embeddings)
    if n_img is not None and n_txt is not None and n_img != n_txt:
        raise ValueError(
            "`image_embeddings` and `text_embeddings` must hold the same number of pairs "
            f"(row i of each is a matching image-text pair). Received: image_embeddings with "
            f"{n_img} rows and text_embeddings with {n_txt} rows."
        )
    n = n_img if n_img is not None else n_txt
    if n is not None and n < 2:
        raise ValueError(
            "`image_embeddings` must hold at least 2 pairs: a contrastive loss needs negatives "
            f"from the other pairs of the batch. Received: a batch of {n}. Use a batch size >= 2."
        )
    d_img, d_txt = image_embeddings.shape[-1], text_embeddings.shape[-1]
    if d_img is not None and d_txt is not None and d_img != d_txt:
        raise ValueError(
            "`image_embeddings` and `text_embeddings` must have the same embedding size. "
            f"Received: {d_img} and {d_txt}. Project both towers to a common `projection_dim`."
        )


def check_logit_scale(logit_scale):
    if isinstance(logit_scale, keras.Variable) and logit_scale.name.startswith("log_"):
        raise ValueError(
            "`logit_scale` must be the multiplier on cosine similarities, not its log. "
            f"Received: the variable {logit_scale.path!r}. Pass `clip_model.logit_scale` "
            "(= exp(clip_model.log_logit_scale))."
        )
    if isinstance(logit_scale, numbers.Real) and not isinstance(logit_scale, bool):
        if not np.isfinite(logit_scale) or logit_scale <= 0:
            raise ValueError(
                "`logit_scale` must be a positive finite number (the exponentiated scale, "
                f"1 / temperature). Received: logit_scale={logit_scale!r}. Pass "
                "`exp(log_scale)`, e.g. 1 / 0.07."
            )


def check_finite_eager(x, name):
    try:
        values = ops.convert_to_numpy(x)
    except Exception:  # symbolic / graph tensor: checked by the caller's data pipeline.
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"`{name}` must contain only finite values. Received: {name} with "
            f"{int(np.size(values) - np.count_nonzero(np.isfinite(values)))} NaN or infinite entries."
        )


def prepare_pair(image_embeddings, text_embeddings, normalize, dtype=None, check_finite=False):
    """`(image, text, labels)`: checked embeddings in `dtype` (default: float32, float64 kept), L2-normalised
    if `normalize`, and the matching-pair labels `range(N)`."""
    image, text = ops.convert_to_tensor(image_embeddings), ops.convert_to_tensor(text_embeddings)
    check_pair_embeddings(image, text)
    if check_finite:
        check_finite_eager(image, "image_embeddings")
        check_finite_eager(text, "text_embeddings")
    dtype = dtype or compute_dtype(image)
    image, text = ops.cast(image, dtype), ops.cast(text, dtype)
    if normalize:
        image, text = l2_normalize(image), l2_normalize(text)
    return image, text, ops.arange(ops.shape(image)[0], dtype="int32")


def clip_loss_terms(image_embeddings, text_embeddings, all_image_embeddings, all_text_embeddings, labels, logit_scale):
    """Per-pair losses of the local rows against a (possibly gathered) global batch.

    Returns `(image_to_text_ce, text_to_image_ce, image_to_text_logits,
    text_to_image_logits)`: the cross-entropy of each local image over all texts
    and of each local text over all images, target `labels` (the local rows'
    positions in the global batch). All inputs must be normalised float32.
    With `all_* = local` and `labels = range(N)` this is the single-device loss.
    """
    i2t = logit_scale * ops.matmul(image_embeddings, ops.transpose(all_text_embeddings))
    t2i = logit_scale * ops.matmul(text_embeddings, ops.transpose(all_image_embeddings))
    ce_i = keras.losses.sparse_categorical_crossentropy(labels, i2t, from_logits=True)
    ce_t = keras.losses.sparse_categorical_crossentropy(labels, t2i, from_logits=True)
    return ce_i, ce_t, i2t, t2i


def clip_loss(image_embeddings, text_embeddings, logit_scale, normalize=True):
    """Symmetric InfoNCE loss of CLIP, averaged over the batch (float32).

    Args:
        image_embeddings: `(N, D)` image embeddings; row i pairs with text row i.
        text_embeddings: `(N, D)` text embeddings.
        logit_scale: the multiplier on cosine similarities, already
            exponentiated (`exp(log_scale)`; CLIP starts at 1 / 0.07 and clamps at 100).
            A Python number or a scalar tensor.
        normalize: whether to L2-normalise the embeddings first (idempotent on
            already unit-norm inputs).

    Returns:
        Scalar float32 (float64 for float64 inputs; half precision is promoted):
        `(mean_i CE(L[i, :], i) + mean_j CE(L[:, j], j)) / 2` with `L = logit_scale * I @ T^T`.

    Raises:
        ValueError: if the embeddings are not 2-D, differ in batch or embedding size,
            hold fewer than 2 pairs or non-finite values, or if `logit_scale` is not a
            positive finite number (or is the log-scale variable).

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021.

    Example:

    >>> images = np.eye(2, 4, dtype="float32")
    >>> texts = np.eye(2, 4, dtype="float32")
    >>> round(float(keras_transfer.losses.clip_loss(images, texts, logit_scale=1.0)), 4)
    0.3133
    """
    check_logit_scale(logit_scale)
    image, text, labels = prepare_pair(image_embeddings, text_embeddings, normalize, check_finite=True)
    scale = cast_scalar(logit_scale, image.dtype)
    ce_i, ce_t, _, _ = clip_loss_terms(image, text, image, text, labels, scale)
    return 0.5 * (ops.mean(ce_i) + ops.mean(ce_t))


@keras.saving.register_keras_serializable(package="keras_transfer")
class CLIPLoss(keras.losses.Loss):
    """CLIP's symmetric contrastive loss as a `keras.losses.Loss`.

    Called as `loss(image_embeddings, text_embeddings)` (the image embeddings
    take the `y_true` slot, as keras-cv's contrastive losses do). The
    per-pair value is `(CE(L[i, :], i) + CE(L[:, i], i)) / 2`, so the default
    mean reduction equals `clip_loss` and `sample_weight` weights pairs.

    Under a `tf.distribute` strategy this loss sees the replica's local batch
    only (negatives from that replica); `keras_transfer.models.CLIP` gathers the
    global batch instead.

    Args:
        logit_scale: fixed multiplier on cosine similarities (exponentiated),
            default 1 / 0.07. `CLIP` learns its own; this class is for a fixed one.
        normalize: L2-normalise the embeddings first.
        reduction: as in `keras.losses.Loss`, over the pairs.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; the pair losses are computed in float32.

    Raises:
        ValueError: if `logit_scale` is not a positive finite Python number, or, when
            called, if the embeddings are not 2-D or differ in batch or embedding size.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021.

    Example:

    >>> loss = keras_transfer.losses.CLIPLoss(logit_scale=1.0)
    >>> images = np.eye(2, 4, dtype="float32")
    >>> round(float(loss(images, images)), 4)
    0.3133
    """

    def __init__(
        self, logit_scale=1.0 / 0.07, normalize=True, reduction="sum_over_batch_size", name="clip_loss", dtype=None
    ):
        check_logit_scale(logit_scale)
        if not isinstance(logit_scale, numbers.Real) or isinstance(logit_scale, bool):
            raise ValueError(
                "`logit_scale` must be a positive finite number. Received: "
                f"logit_scale={logit_scale!r}. Use `clip_loss` for a tensor-valued scale."
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.logit_scale = float(logit_scale)
        self.normalize = bool(normalize)

    def call(self, y_true, y_pred):
        image, text, labels = prepare_pair(y_true, y_pred, self.normalize, dtype="float32")
        ce_i, ce_t, _, _ = clip_loss_terms(image, text, image, text, labels, self.logit_scale)
        return 0.5 * (ce_i + ce_t)

    def get_config(self):
        config = super().get_config()
        config.update({"logit_scale": self.logit_scale, "normalize": self.normalize})
        return config
