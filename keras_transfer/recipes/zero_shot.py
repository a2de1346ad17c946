"""Zero-shot classification with a trained `CLIP` (Radford et al., 2021, §3.1.2, §3.1.4).

Each class name is written into every prompt template ("a photo of the number
{}"), the prompts are embedded by the text tower, unit-normalised, averaged per
class (prompt ensembling) and re-normalised; an image is assigned the class
whose embedding has the largest cosine similarity. The probabilities are a
softmax over the classes, or for a SigLIP-trained CLIP (Zhai et al., 2023) one
sigmoid per class with the model's learned scale and bias. The result is a plain
`keras.Model` image -> class probabilities (a `ZeroShotHead` on the image
tower) that saves to `.keras` and exports to a SavedModel. Neither Keras nor
keras-hub has a zero-shot builder; written here.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.layers.zero_shot_head import ZeroShotHead
from keras_transfer.utils import validation


def _check_names(class_names):
    if isinstance(class_names, str) or not hasattr(class_names, "__len__"):
        raise ValueError(
            "`class_names` must be a list of strings. Received: "
            f"class_names={class_names!r}. Wrap a single name in a list."
        )
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise ValueError("`class_names` must contain at least one class name. Received: class_names=[]")
    if any(not c.strip() for c in class_names):
        raise ValueError(f"`class_names` must not contain empty names. Received: class_names={class_names}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"`class_names` must be unique. Received: class_names={class_names}")
    return class_names


def _check_templates(templates):
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError(
            "`templates` must contain at least one prompt template. Received: templates=[]. "
            "Use e.g. ['a photo of a {}.']"
        )
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                "Every template must be a string with exactly one '{}' where the class name "
                f"goes. Received: template={template!r}. Write e.g. 'a photo of a {{}}.'"
            )
        try:
            template.format("x")
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(
                "Every template must format with a single class name; escape other braces as "
                f"'{{{{' and '}}}}'. Received: template={template!r} ({error})"
            ) from error
    return templates


def _sigmoid_or_softmax(clip_model, activation, logit_bias):
    """`(activation, logit_bias)` of the head, defaulting from the model's loss (SigLIP: sigmoid, its bias)."""
    trained_bias = getattr(clip_model, "logit_bias", None)
    if activation is None:
        activation = "sigmoid" if getattr(clip_model, "loss_type", "clip") == "siglip" else "softmax"
    validation.check_one_of("activation", activation, ("softmax", "sigmoid"), "None follows the model's loss")
    if logit_bias is None:
        logit_bias = 0.0 if trained_bias is None else float(ops.convert_to_numpy(trained_bias))
    return activation, validation.check_finite_float("logit_bias", logit_bias, "None takes the model's")


def _tokenize(tokenizer, prompts):
    ids = tokenizer(prompts)
    if isinstance(ids, dict):  # keras-hub preprocessors return {"token_ids", "padding_mask"}
        ids = ids["token_ids"]
    return ops.convert_to_numpy(ids)


def class_text_embeddings(clip_model, class_names, templates, tokenizer, batch_size=256):
    """Unit-norm text embeddings of the classes, averaged over the prompt templates.

    Every class name is written into every template, the prompts are embedded by
    the text tower (unit norm), averaged per class (prompt ensembling) and
    normalised again.

    Args:
        clip_model: a `keras_transfer.models.CLIP`.
        class_names: list of unique, non-empty class names, e.g. `["zero", "one", ...]`.
        templates: list of prompt templates each with one `{}` (or one template
            string: no ensembling).
        tokenizer: callable strings -> token ids (e.g. `word_tokenizer(...)`, or a
            keras-hub preprocessor returning `{"token_ids": ...}`).
        batch_size: prompts per forward pass of the text tower.

    Returns:
        A NumPy array `(num_classes, projection_dim)` of unit-norm rows.

    Raises:
        ValueError: if `class_names` is not a list of unique non-empty names, a template
            does not hold exactly one `{}`, or `tokenizer` is not callable.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021 (§3.1.4, prompt ensembling).

    Example:

    >>> tokenizer = keras_transfer.layers.word_tokenizer(
    ...     vocabulary=["a", "photo", "of", "cat", "dog"], sequence_length=4)
    >>> image_encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    >>> text_encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     tokenizer.vocabulary_size(), 4, embedding_dim=8, num_layers=1, num_heads=2)
    >>> clip = keras_transfer.models.CLIP(image_encoder, text_encoder, projection_dim=4)
    >>> embeddings = keras_transfer.recipes.class_text_embeddings(
    ...     clip, ["cat", "dog"], ["a photo of a {}", "{}"], tokenizer)
    >>> embeddings.shape
    (2, 4)
    >>> np.linalg.norm(embeddings, axis=1).round(3).tolist()
    [1.0, 1.0]
    """
    class_names = _check_names(class_names)
    templates = _check_templates(templates)
    if not callable(tokenizer):
        raise ValueError(f"`tokenizer` must be callable (strings -> token ids). Received: {tokenizer!r}")
    prompts = [template.format(name) for name in class_names for template in templates]
    token_ids = _tokenize(tokenizer, prompts)
    embeddings = clip_model.encode_text(token_ids, batch_size=batch_size)
    embeddings = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)


def build_zero_shot_classifier(
    clip_model,
    class_names,
    templates,
    tokenizer,
    image_shape=None,
    logit_scale=None,
    output="probabilities",
    name="zero_shot_classifier",
    activation=None,
    logit_bias=None,
):
    """A `keras.Model` image -> class probabilities from a trained `CLIP`.

    The probabilities are `softmax(t * cos)` over the classes for a CLIP trained
    with its contrastive loss, and `sigmoid(t * cos + b)` per class (independent,
    not summing to one) for one trained with `loss_type="siglip"`, with the model's
    learned scale `t` and bias `b`: the probability the SigLIP loss was trained to
    give an image-text pair of matching.

    Args:
        clip_model: a trained `keras_transfer.models.CLIP`.
        class_names: list of class names.
        templates: list of prompt templates with one `{}` each (ensembled).
        tokenizer: callable strings -> token ids.
        image_shape: shape of one image; default: the image encoder's input shape.
        logit_scale: multiplier on cosine similarities; default: the model's learned one.
        output: "probabilities" or "logits".
        name: the name of the returned model.
        activation: "softmax" or "sigmoid"; default: "sigmoid" for a model trained
            with `loss_type="siglip"`, else "softmax".
        logit_bias: a number added to the logits; default: the SigLIP model's learned
            `logit_bias`, 0 for a CLIP-loss model.

    Returns:
        A functional `keras.Model` sharing the image tower's layers with `clip_model`,
        ending in a `ZeroShotHead` named "zero_shot_head" whose `class_names` are in its config.

    Raises:
        ValueError: if the class names or templates are invalid (see
            `class_text_embeddings`), `activation` is not "softmax" or "sigmoid",
            `logit_bias` is not finite, or `image_shape` is None and the image encoder
            has no defined input shape.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021 (§3.1.2, zero-shot transfer); Zhai, Mustafa,
        Kolesnikov & Beyer, "Sigmoid Loss for Language Image Pre-Training", ICCV 2023.

    Example:

    >>> tokenizer = keras_transfer.layers.word_tokenizer(
    ...     vocabulary=["a", "photo", "of", "the", "cat", "dog", "bird"], sequence_length=5)
    >>> image_encoder = keras.Sequential(
    ...     [keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
    >>> text_encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     tokenizer.vocabulary_size(), 5, embedding_dim=8, num_layers=1, num_heads=2)
    >>> clip = keras_transfer.models.CLIP(image_encoder, text_encoder, projection_dim=8)
    >>> classifier = keras_transfer.recipes.build_zero_shot_classifier(
    ...     clip, ["cat", "dog", "bird"], ["a photo of a {}", "a photo of the {}"], tokenizer)
    >>> tuple(classifier.predict(np.zeros((3, 8, 8, 3)), verbose=0).shape)
    (3, 3)
    >>> classifier.get_layer("zero_shot_head").class_names
    ['cat', 'dog', 'bird']
    """
    class_names = _check_names(class_names)
    activation, logit_bias = _sigmoid_or_softmax(clip_model, activation, logit_bias)
    embeddings = class_text_embeddings(clip_model, class_names, templates, tokenizer)
    if image_shape is None:
        try:
            image_shape = tuple(clip_model.image_encoder.input_shape[1:])
        except (AttributeError, ValueError) as error:
            raise ValueError(
                "`image_shape` must be given when the image encoder has no defined input shape. "
                "Received: image_shape=None"
            ) from error
    scale = clip_model.get_logit_scale() if logit_scale is None else logit_scale
    images = keras.Input(shape=tuple(image_shape), name="images")
    features = clip_model.image_pooler(clip_model.image_encoder(images))
    projected = clip_model.image_projection(features)
    outputs = ZeroShotHead(
        num_classes=len(class_names),
        embedding_dim=clip_model.projection_dim,
        logit_scale=scale,
        class_names=class_names,
        class_embeddings=embeddings,
        output=output,
        activation=activation,
        logit_bias=logit_bias,
        name="zero_shot_head",
    )(projected)
    return keras.Model(images, outputs, name=name)


def export_zero_shot_classifier(model, filepath, image_bytes=True, channels=None):
    """Exports an image classifier to a SavedModel that also takes encoded image bytes.

    The SavedModel has a `serve` endpoint (float32 images) and, with
    `image_bytes=True`, `serve_image_bytes` (a batch of encoded PNG/JPEG strings,
    decoded and resized to the model's input size inside the graph). Written with
    `keras.export.ExportArchive`; `serving_default` is the float endpoint. Any
    Keras model of fixed-size images works, e.g. one from `build_zero_shot_classifier`.

    Args:
        model: a `keras.Model` of `(height, width, channels)` images.
        filepath: the SavedModel folder to write.
        image_bytes: whether to add the `serve_image_bytes` endpoint.
        channels: channels of the decoded images (default: the model's).

    Returns:
        `filepath`.

    Raises:
        ValueError: if `model` does not take fixed-size images or `channels` is not a
            positive integer.

    Example:

    >>> import tensorflow as tf
    >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> path = keras_transfer.recipes.export_zero_shot_classifier(model, "zero_shot_savedmodel")
    >>> sorted(tf.saved_model.load(path).signatures)
    ['serve', 'serve_image_bytes', 'serving_default']
    """
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(
            f"`model` must take fixed-size images (height, width, channels). Received: input shape {shape}"
        )
    height, width, model_channels = shape
    channels = model_channels if channels is None else validation.check_positive_int("channels", channels)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None,) + shape, tf.float32)],
    )
    if image_bytes:

        def decode(data):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
            return tf.ensure_shape(image, (height, width, channels))

        def serve_bytes(data):
            images = tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32))
            return model(images, training=False)

        archive.add_endpoint(
            name="serve_image_bytes",
            fn=serve_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string)],
        )
    archive.write_out(filepath, verbose=False)
    return filepath
