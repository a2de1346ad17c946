"""Helpers of `keras_transfer.models.CLIP`: eager input checks and the keras-hub converter."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.utils import validation


def batch_error(n_img, n_txt):
    """The `ValueError` for image and text batches of different sizes."""
    return ValueError(
        "The image and text batches must hold the same number of pairs (row i of each is a "
        f"matching pair). Received: {n_img} images and {n_txt} texts."
    )


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
