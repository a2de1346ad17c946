"""A SavedModel for TF Serving that takes encoded images and answers with class names."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.utils.files import replace_folder

IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"
CLASS_NAMES_FILE = "class_names.txt"


def decode_images(data, height, width, channels):
    """Decodes a batch of encoded images into a float32 `(batch, height, width, channels)` batch.

    PNG, JPEG, GIF (first frame) and BMP, any size, with or without alpha or a palette: each
    image is decoded to `channels` channels (alpha dropped, grey repeated) and resized with
    bilinear interpolation to `(height, width)` (an image already that size is unchanged).
    Pixel values stay in [0, 255]: the model's own preprocessing runs after this.

    Args:
        data: a string tensor of shape `(batch,)`, one encoded image per entry.
        height: the image height the model takes.
        width: the image width the model takes.
        channels: 1 or 3.

    Returns:
        A float32 tensor `(batch, height, width, channels)`.

    Example:

    >>> import tensorflow as tf
    >>> png = tf.io.encode_png(np.full((4, 6, 3), 255, "uint8"))
    >>> images = keras_transfer.serving.decode_images(tf.stack([png, png]), 8, 8, 1)
    >>> tuple(images.shape), float(images[0, 0, 0, 0])
    ((2, 8, 8, 1), 255.0)
    """

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
        return tf.ensure_shape(image, (height, width, channels))

    return tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32))


def _input_shape(model):
    # Subclassed models of this package declare their serving inputs (models/_serving.py).
    declared = getattr(model, "serving_input_signature", None)
    if declared is not None:
        specs = declared()
        return tuple(specs[0].shape) if len(specs) == 1 and hasattr(specs[0], "shape") else None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if isinstance(shape, tuple) and all(v is None or isinstance(v, int) for v in shape) else None


def _image_shape(model, image_size):
    input_shape = _input_shape(model)
    shape = input_shape[1:] if input_shape else ()
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(
            "`model` must take one batch of images (height, width, channels) with 1 or 3 "
            f"channels. Received: model input shape {input_shape}"
        )
    height, width, channels = shape
    if image_size is not None:
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or any(not isinstance(v, int) or v < 1 for v in image_size)
        ):
            raise ValueError(
                f"`image_size` must be (height, width) with positive integers. Received: image_size={image_size}"
            )
        if (height, width) != (None, None) and (height, width) != tuple(image_size):
            raise ValueError(
                f"`image_size` must match the model's input size {(height, width)} or be None. "
                f"Received: image_size={image_size}"
            )
        height, width = image_size
    if height is None or width is None:
        raise ValueError(
            "`image_size` must be given for a model that takes images of any size: encoded "
            f"images are resized to it. Received: image_size=None, model input shape {shape}"
        )
    return height, width, channels


def _output_shape(model, height, width, channels):
    try:
        return tuple(model.output_shape)  # functional and Sequential models
    except (AttributeError, ValueError):
        # Subclassed models (e.g. DANN's label path) have no output_shape: trace one call symbolically.
        spec = model.compute_output_spec(keras.KerasTensor((None, height, width, channels)))
        return tuple(spec.shape) if hasattr(spec, "shape") else None


def _check_class_names(class_names, num_classes):
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes or len(set(names)) != len(names):
        raise ValueError(
            f"`class_names` must hold {num_classes} distinct names, one per model output. "
            f"Received: class_names={list(class_names)!r}"
        )
    return names


def _check_target(filepath, overwrite):
    filepath = os.fspath(filepath)
    if os.path.exists(filepath) and not os.path.isdir(filepath):
        raise ValueError(f"`filepath` must be a folder to create, not a file. Received: filepath={filepath!r}")
    if os.path.isdir(filepath) and os.listdir(filepath):
        if not overwrite:
            raise ValueError(
                "`filepath` already holds files; pass overwrite=True to replace them, or choose "
                f"a new folder. Received: filepath={filepath!r}"
            )
        if not os.path.exists(os.path.join(filepath, "saved_model.pb")):
            raise ValueError(
                "`filepath` holds files that are not a SavedModel; overwrite=True only replaces "
                f"an earlier export. Choose a new folder. Received: filepath={filepath!r}"
            )
    return filepath


def export_image_classifier(model, filepath, class_names=None, image_size=None, overwrite=False, verbose=False):
    """Exports an image classifier for TF Serving, with endpoints for pixels and for encoded images.

    Endpoints (both return `{"scores": (batch, classes) float32, "classes": (batch, classes)
    string}`, TF Serving's classification layout; row i of `classes` names the columns of
    `scores`):
      - `serve` / `serving_default`: `images`, a float32 batch `(batch, height, width, channels)`
        of pixels as `model.predict` takes them.
      - `serve_image_bytes`: `image_bytes`, a string batch `(batch,)` of encoded PNG / JPEG /
        GIF / BMP files of any size, decoded and resized inside the graph (`decode_images`); the
        model's own preprocessing (e.g. `build_classifier`'s backbone preprocessing) follows.
        This is what a REST client sends as `{"b64": "..."}`.

    The folder also holds `class_names.txt` (one name per line, in score order) for clients
    that read the labels from a file.

    The model can be any single-input image classifier: a `build_classifier` / `fine_tune`
    result, a `keras-transfer finetune` model, `DANN` (its label path), a folded adapter model.

    Args:
        model: a built `keras.Model` from images `(batch, height, width, 1 or 3)` to scores
            `(batch, classes)`.
        filepath: the folder to write (it must not hold files, unless `overwrite`).
        class_names: one name per class (default "0", "1", ...).
        image_size: (height, width) encoded images are resized to; needed only when the model
            takes images of any size.
        overwrite: replace an earlier export at `filepath` (the new one is written beside it
            first, so a failure leaves the old one in place; no stale files remain).
        verbose: print Keras's export summary.

    Returns:
        `filepath`.

    Raises:
        ValueError: if `model` is not a built single-input image classifier,
            `class_names` does not hold one distinct name per class, `image_size`
            is invalid or missing for a model of any input size, or `filepath` is
            a file or a non-empty folder (unless `overwrite` replaces an earlier
            export).

    Reference:
        TF Serving REST API, https://www.tensorflow.org/tfx/serving/api_rest

    Example:

    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> path = os.path.join(tempfile.mkdtemp(), "served")
    >>> _ = keras_transfer.serving.export_image_classifier(model, path, class_names=["cat", "dog"])
    >>> served = tf.saved_model.load(path)
    >>> png = tf.io.encode_png(np.zeros((8, 8, 1), "uint8"))
    >>> served.signatures["serve_image_bytes"](image_bytes=tf.stack([png]))["classes"].numpy()
    array([[b'cat', b'dog']], dtype=object)
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(f"`model` must be a built keras.Model. Received: model={model!r}")
    height, width, channels = _image_shape(model, image_size)
    output_shape = _output_shape(model, height, width, channels)
    if not isinstance(output_shape, tuple) or len(output_shape) != 2 or output_shape[-1] is None:
        raise ValueError(
            "`model` must output one score per class, shape (batch, classes). "
            f"Received: model output shape {output_shape}"
        )
    names = _check_class_names(class_names, output_shape[-1])
    filepath = _check_target(filepath, overwrite)
    names_tensor = tf.constant(np.array(names, dtype=object), dtype=tf.string)

    def answer(images):
        scores = tf.cast(model(images, training=False), tf.float32)
        classes = tf.tile(names_tensor[None], (tf.shape(scores)[0], 1))
        return {"scores": scores, "classes": classes}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=answer,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name=IMAGES_INPUT)],
    )
    archive.add_endpoint(
        name="serve_image_bytes",
        fn=lambda data: answer(decode_images(data, height, width, channels)),
        input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)],
    )

    def write(folder):
        archive.write_out(folder, verbose=verbose)
        with open(os.path.join(folder, CLASS_NAMES_FILE), "w") as handle:
            handle.write("\n".join(names) + "\n")

    replace_folder(write, filepath)
    return filepath
