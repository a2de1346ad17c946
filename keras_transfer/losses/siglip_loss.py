"""SigLIP's pairwise sigmoid loss (Zhai et al., 2023, Algorithm 1).

For a batch of N (image, text) pairs with unit-normalised embeddings I and T,
the logits are `L = logit_scale * I @ T^T + logit_bias` and every (image, text)
pair is an independent binary problem: label `z_ij = +1` on the diagonal (the
matching pair) and `-1` elsewhere. The loss is
`-1/N * sum_ij log sigmoid(z_ij * L_ij)`: a sum over the N^2 pairs, divided by
the batch size (as in the paper), so no softmax normalises over the batch.

Neither Keras nor keras-hub ships this loss (keras-hub's SigLIP has the logits
head only), so it is written here from the formula.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_transfer.losses.clip_loss import check_logit_scale
from keras_transfer.losses.clip_loss import prepare_pair
from keras_transfer.ops.numerics import cast_scalar


def siglip_loss_terms(image_embeddings, all_text_embeddings, labels, logit_scale, logit_bias):
    """Per-image losses of the local rows against a (possibly gathered) global batch of texts.

    Returns `(losses, logits)`: `losses[i] = -sum_j log sigmoid(z_ij * L_ij)` over all
    texts `j`, with `z_ij = +1` where `j == labels[i]` (the local rows' positions in
    the global batch) and `-1` elsewhere; `logits` the `(local, global)` matrix `L`.
    Summed over every replica's rows this is the whole `N x N` double sum. Inputs
    must be normalised and of one float dtype.
    """
    logits = logit_scale * ops.matmul(image_embeddings, ops.transpose(all_text_embeddings)) + logit_bias
    positive = ops.one_hot(labels, ops.shape(all_text_embeddings)[0], dtype=logits.dtype)
    signs = 2.0 * positive - 1.0
    # -log sigmoid(x) = softplus(-x), stable for large |x|.
    return ops.sum(ops.softplus(-signs * logits), axis=-1), logits


def check_logit_bias(logit_bias):
    """Raises `ValueError` unless a Python-number `logit_bias` is finite."""
    if isinstance(logit_bias, bool) or (isinstance(logit_bias, numbers.Real) and not np.isfinite(logit_bias)):
        raise ValueError(
            f"`logit_bias` must be a finite number (SigLIP starts at -10). Received: logit_bias={logit_bias!r}."
        )


def siglip_loss(image_embeddings, text_embeddings, logit_scale, logit_bias, normalize=True):
    """Pairwise sigmoid loss of SigLIP, summed over pairs and divided by the batch size.

    Args:
        image_embeddings: `(N, D)` image embeddings; row i pairs with text row i.
        text_embeddings: `(N, D)` text embeddings.
        logit_scale: the multiplier on cosine similarities, already exponentiated
            (`exp(t')`; SigLIP starts at 10). A Python number or a scalar tensor.
        logit_bias: the additive bias `b` of the logits (SigLIP starts at -10, so the
            N - 1 negatives of each row do not dominate the first steps). A Python number
            or a scalar tensor.
        normalize: whether to L2-normalise the embeddings first.

    Returns:
        Scalar float32 (float64 for float64 inputs; half precision is promoted):
        `-1/N * sum_ij log sigmoid(z_ij * (logit_scale * I_i . T_j + logit_bias))`,
        `z_ij = 1` if `i == j` else `-1`.

    Raises:
        ValueError: if the embeddings are not 2-D, differ in batch or embedding size,
            hold fewer than 2 pairs or non-finite values, if `logit_scale` is not a
            positive finite number (or is a log-scale variable), or if `logit_bias`
            is not finite.

    Reference:
        Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for Language Image
        Pre-Training", ICCV 2023.

    Example:

    >>> images = np.eye(2, 4, dtype="float32")
    >>> round(float(keras_transfer.losses.siglip_loss(images, images, 10.0, -10.0)), 4)
    0.6932
    """
    check_logit_scale(logit_scale)
    check_logit_bias(logit_bias)
    image, text, labels = prepare_pair(image_embeddings, text_embeddings, normalize, check_finite=True)
    scale, bias = cast_scalar(logit_scale, image.dtype), cast_scalar(logit_bias, image.dtype)
    losses, _ = siglip_loss_terms(image, text, labels, scale, bias)
    return ops.mean(losses)


@keras.saving.register_keras_serializable(package="keras_transfer")
class SigLIPLoss(keras.losses.Loss):
    """SigLIP's pairwise sigmoid loss as a `keras.losses.Loss`, with a fixed scale and bias.

    Called as `loss(image_embeddings, text_embeddings)` (the image embeddings take the
    `y_true` slot, as `CLIPLoss`). The per-image value is
    `-sum_j log sigmoid(z_ij * L_ij)`, so the default mean reduction equals
    `siglip_loss` and `sample_weight` weights images. `CLIP(loss="siglip")` learns
    its own scale and bias and gathers the global batch under a `tf.distribute`
    strategy; this class sees the replica's local batch only.

    Args:
        logit_scale: fixed multiplier on cosine similarities (exponentiated), default 10.
        logit_bias: fixed bias of the logits, default -10.
        normalize: L2-normalise the embeddings first.
        reduction: as in `keras.losses.Loss`, over the images.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; the losses are computed in float32.

    Raises:
        ValueError: if `logit_scale` is not a positive finite Python number or
            `logit_bias` not a finite one, or, when called, if the embeddings are not
            2-D, differ in batch or embedding size, or hold fewer than 2 pairs.

    Reference:
        Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for Language Image
        Pre-Training", ICCV 2023.

    Example:

    >>> loss = keras_transfer.losses.SigLIPLoss()
    >>> images = np.eye(2, 4, dtype="float32")
    >>> round(float(loss(images, images)), 4)
    0.6932
    """

    def __init__(
        self, logit_scale=10.0, logit_bias=-10.0, normalize=True, reduction="sum_over_batch_size",
        name="siglip_loss", dtype=None,
    ):  # fmt: skip
        check_logit_scale(logit_scale)
        for arg, value in (("logit_scale", logit_scale), ("logit_bias", logit_bias)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ValueError(
                    f"`{arg}` must be a finite Python number. Received: {arg}={value!r}. Use "
                    "`siglip_loss` for tensor values."
                )
        check_logit_bias(logit_bias)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.logit_scale = float(logit_scale)
        self.logit_bias = float(logit_bias)
        self.normalize = bool(normalize)

    def call(self, y_true, y_pred):
        image, text, labels = prepare_pair(y_true, y_pred, self.normalize, dtype="float32")
        losses, _ = siglip_loss_terms(image, text, labels, self.logit_scale, self.logit_bias)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update({"logit_scale": self.logit_scale, "logit_bias": self.logit_bias, "normalize": self.normalize})
        return config
