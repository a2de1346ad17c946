"""Helpers of `keras_transfer.models.CLIP`: the contrastive step's loss, input checks, the keras-hub converter."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.losses.clip_loss import clip_loss_terms
from keras_transfer.losses.siglip_loss import siglip_loss_terms
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._task_signature import declared_input
from keras_transfer.models._task_signature import recorded_input_shapes
from keras_transfer.utils import distributed
from keras_transfer.utils import validation


def batch_error(n_img, n_txt):
    """The `ValueError` for image and text batches of different sizes."""
    return ValueError(
        "The image and text batches must hold the same number of pairs (row i of each is a "
        f"matching pair). Received: {n_img} images and {n_txt} texts."
    )


def _hits(logits, labels):
    return ops.sum(ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32"))


def contrastive_loss_and_stats(image, text, logit_scale, logit_bias=None):
    """This replica's share of the global-batch loss, and the global metric values.

    CLIP's symmetric cross-entropy, or SigLIP's pairwise sigmoid loss when `logit_bias`
    is given (this replica's images against the gathered texts: summed over replicas, the
    whole N x N sum). Both divide by the global batch size.
    """
    n_img, n_txt = image.shape[0], text.shape[0]
    if n_img is not None and n_txt is not None and n_img != n_txt:
        raise batch_error(n_img, n_txt)
    if n_img == 1 and distributed.num_replicas() == 1:
        raise ValueError(
            "`CLIP` needs at least 2 (image, text) pairs per batch: a contrastive loss takes "
            "its negatives from the other pairs. Received: a batch of 1. Use batch_size >= 2."
        )
    tf.debugging.assert_equal(
        tf.shape(image)[0],
        tf.shape(text)[0],
        message="CLIP: the image and text batches must hold the same number of pairs",
    )
    all_image = distributed.all_gather_with_grad(image)
    all_text = distributed.all_gather_with_grad(text)
    labels = distributed.global_batch_labels(image)
    if logit_bias is None:
        ce_i, ce_t, i2t, t2i = clip_loss_terms(image, text, all_image, all_text, labels, logit_scale)
        local_sum = 0.5 * (ops.sum(ce_i) + ops.sum(ce_t))
    else:
        losses, i2t = siglip_loss_terms(image, all_text, labels, logit_scale, logit_bias)
        t2i = logit_scale * ops.matmul(text, ops.transpose(all_image))  # for the retrieval accuracy only
        local_sum = ops.sum(losses)
    loss = distributed.global_mean(local_sum, tf.shape(image)[0])
    # Metrics: global values, identical on every replica. The argmax of NaN logits is a
    # valid index: NaN hits instead, so no accuracy looks finite while the logits are not.
    finite = all_finite([i2t, t2i])
    count = ops.cast(distributed.global_batch_size(image), "float32")
    stats = {
        "loss": distributed.all_reduce_sum(tf.stop_gradient(loss)),
        "image_to_text_accuracy": distributed.all_reduce_sum(nan_unless(finite, _hits(i2t, labels))) / count,
        "text_to_image_accuracy": distributed.all_reduce_sum(nan_unless(finite, _hits(t2i, labels))) / count,
    }
    return loss, stats


def unpack_clip_batch(data, split_inputs):
    """`(images, token_ids)` of a training batch; images checked finite inside the step."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if y is not None and not isinstance(x, dict) and not isinstance(x, (list, tuple)):
        # fit(images, token_ids): Keras hands the two arrays over as (x, y).
        x = (x, y)
    elif y is not None:
        raise ValueError(
            "`CLIP` trains on (image, text) pairs without labels. Received: labels besides "
            "a full input. Pass fit({'images': ..., 'token_ids': ...}) or fit(images, token_ids)."
        )
    if sample_weight is not None:
        raise ValueError("`CLIP` does not support `sample_weight`. Received: a sample_weight.")
    images, token_ids = split_inputs(x)
    if tf.as_dtype(images.dtype).is_floating:
        # Datasets are not checked eagerly: fail loudly rather than train on NaN.
        images = tf.debugging.assert_all_finite(
            images, "CLIP: `images` must contain only finite values (found NaN or Inf in a batch)"
        )
    return images, token_ids


def check_clip_data(split_inputs, x, y, batch_size, sample_weight=None):
    """Eager checks of `fit`/`evaluate` array inputs (a traced step only sees unknown batch sizes)."""
    if sample_weight is not None:
        raise ValueError("`CLIP` does not support `sample_weight`. Received: a sample_weight.")
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) and len(spec) == 1 else spec
        first = tf.nest.flatten(spec)[0]
        if first.shape.rank and first.shape[0] == 1:
            raise ValueError(
                "`CLIP` needs at least 2 (image, text) pairs per batch. Received: a dataset "
                "batched by 1. Batch it by >= 2."
            )
        return
    if y is not None and not isinstance(x, (dict, list, tuple)):
        x = (x, y)
    try:
        images, token_ids = split_inputs(x)
    except ValueError:
        return  # generators, PyDatasets...: checked by Keras / the step
    if not hasattr(images, "__len__") or not hasattr(token_ids, "__len__"):
        return
    n_img, n_txt = len(images), len(token_ids)
    if n_img != n_txt:
        raise batch_error(n_img, n_txt)
    if n_img < 2:
        raise ValueError(
            "`CLIP` needs at least 2 (image, text) pairs: a contrastive loss takes its "
            f"negatives from the other pairs. Received: {n_img} pair(s)."
        )
    size = 32 if batch_size is None else batch_size
    if size == 1 or (n_img > size and n_img % size == 1):
        raise ValueError(
            "`batch_size` must leave at least 2 pairs in every batch (a single pair has no "
            f"negatives). Received: batch_size={batch_size} for {n_img} pairs. Pick another "
            "batch_size."
        )
    if isinstance(images, np.ndarray):
        validation.check_finite(images, "images")


def clip_serving_signature(model):
    """`CLIP.serving_input_signature()`: the encoders' declared inputs, else the recorded call shapes."""
    image_shape, image_dtype = declared_input(model.image_encoder)
    token_shape, token_dtype = declared_input(model.text_encoder, "int32")
    if not tf.as_dtype(token_dtype).is_integer:
        token_dtype = "int32"
    if image_shape is None or token_shape is None:
        recorded = recorded_input_shapes(model)
        if isinstance(recorded, dict) and {"images", "token_ids"} <= set(recorded):
            recorded = (recorded["images"], recorded["token_ids"])
        if isinstance(recorded, (list, tuple)) and len(recorded) == 2:
            image_shape = image_shape or tuple(recorded[0][1:])
            token_shape = token_shape or tuple(recorded[1][1:])
    if token_shape is None and getattr(model.text_encoder, "sequence_length", None):
        token_shape = (None,)
    if image_shape is None or token_shape is None:
        raise ValueError(
            "`CLIP.export()` needs the input shapes. Received: a model never called, whose "
            "encoders declare no `keras.Input`. Call it once on {'images': ..., 'token_ids': "
            "...}, fit it, or pass `input_signature=`."
        )
    return [
        {
            "images": keras.InputSpec(shape=(None,) + tuple(image_shape), dtype=image_dtype, name="images"),
            "token_ids": keras.InputSpec(shape=(None,) + tuple(token_shape), dtype=token_dtype, name="token_ids"),
        }
    ]


def clip_from_keras_hub(cls, backbone, **kwargs):
    """`cls.from_keras_hub(backbone, **kwargs)`: see `CLIP.from_keras_hub`."""
    try:
        import keras_hub
    except ImportError as error:  # pragma: no cover - exercised when keras-hub is absent
        raise ValueError(
            "`CLIP.from_keras_hub` needs keras-hub. Received: keras-hub is not installed. Run `pip install keras-hub`."
        ) from error
    if isinstance(backbone, str):
        backbone = keras_hub.models.CLIPBackbone.from_preset(backbone)
    if not isinstance(backbone, keras_hub.models.CLIPBackbone):
        raise ValueError(
            f"`backbone` must be a keras_hub.models.CLIPBackbone or a preset name. Received: backbone={backbone!r}"
        )
    vision, text = backbone.vision_encoder, backbone.text_encoder
    images = keras.Input(shape=vision.image_shape, name="images")
    image_encoder = keras.Model(images, vision({"images": images}), name="image_encoder")
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    text_encoder = keras.Model(token_ids, text({"token_ids": token_ids}), name="text_encoder")
    log_scale = float(ops.convert_to_numpy(backbone.clip_head.logit_scale))
    kwargs.setdefault("max_logit_scale", max(100.0, math.exp(log_scale)))
    model = cls(
        image_encoder,
        text_encoder,
        projection_dim=backbone.projection_dim,
        logit_scale_init=math.exp(log_scale),
        image_pooling="first",
        text_pooling="argmax_token",
        **kwargs,
    )
    model.image_projection.build((None, backbone.vision_projection.kernel.shape[0]))
    model.text_projection.build((None, backbone.text_projection.kernel.shape[0]))
    model.image_projection.kernel.assign(backbone.vision_projection.kernel)
    model.text_projection.kernel.assign(backbone.text_projection.kernel)
    return model


class ClampValue(keras.constraints.Constraint):
    """Clips a weight's values into `[min_value, max_value]` after every optimizer step."""

    # Keras has no value-clipping constraint (MinMaxNorm clips norms); written here.
    def __init__(self, min_value, max_value):
        self.min_value, self.max_value = min_value, max_value

    def __call__(self, w):
        return keras.ops.clip(w, self.min_value, self.max_value)
