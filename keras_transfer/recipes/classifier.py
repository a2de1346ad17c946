"""Model surgery: a registry backbone with input adaptation and a new head for the task."""

import keras

from keras_transfer.layers.backbone_preprocessing import BackbonePreprocessing
from keras_transfer.layers.image_input_adapter import ImageInputAdapter
from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes import text_backbone as text_lib
from keras_transfer.utils import validation

BACKBONE_LAYER_NAME = "backbone"
HEAD_LAYER_NAME = "head"


def build_classifier(
    backbone,
    num_classes,
    input_shape=None,
    weights=None,
    image_size=None,
    value_range=(0.0, 255.0),
    pooling="auto",
    dropout=0.2,
    activation="softmax",
    name=None,
    grey_to_rgb="replicate",
    **backbone_kwargs,
):
    """A backbone (image or text) with a new classification head: the first step of every recipe.

    For images the graph is `input -> ImageInputAdapter (resize, grey->RGB) -> BackbonePreprocessing
    (the family's preprocess_input) -> backbone(training=False) -> pooling -> dropout -> head`.
    The backbone is called with `training=False`. Note that Keras 3 functional models
    pass the outer `training` flag through to nested layers (it overrides the
    `training=False` recorded in the graph), so what keeps BatchNorm statistics put is
    `trainable=False` on the BatchNorm layers: a frozen Keras 3 BatchNormalization always
    runs in inference mode. `freeze_backbone` and `unfreeze_backbone` (which keeps
    BatchNorm frozen unless `train_batchnorm=True`) maintain that.

    For a text backbone the graph is `token ids -> backbone(training=False) -> pooling ->
    dropout -> head`: the model takes the backbone's own inputs (int32 token ids named
    "token_ids" (id 0 is padding), or keras-hub's dict `{"token_ids", "padding_mask",
    "segment_ids"}`), and every recipe (`fine_tune`, `freeze_backbone`, `unfreeze_backbone`
    with transformer blocks, `learning_rate_multipliers`, `add_adapters(kind="lora")`)
    applies to it.

    Args:
        backbone: a registry name (`available_backbones()`), a built headless `keras.Model`
            (it must take (H, W, 3) images already preprocessed as it expects), or a text
            backbone: a `keras_transfer.layers.TextTransformerEncoder`, a built model taking
            integer token ids (e.g. one wrapping that encoder), or a keras-hub backbone with
            dict inputs and outputs (e.g. `keras_hub.models.BertBackbone`).
        num_classes: classes of the new task (>= 2).
        input_shape: (height, width, channels) of the task's images, channels 1 or 3
            (required for images); for a text backbone None (its own input length) or
            `(sequence_length,)`.
        weights: "imagenet", a local weights file, or None (registry names only).
        image_size: (height, width) the backbone sees; default: the input size, raised to the
            backbone's minimum.
        value_range: (low, high) of the task's pixel values.
        pooling: "auto", "avg" or "max". Images: "auto" is "avg". Text: "auto" keeps the
            backbone's own pooled output (a `(batch, features)` output, keras-hub's
            "pooled_output"), else the mean over the non-padding tokens; "avg" / "max"
            pool the sequence output over the non-padding tokens (keras-hub's
            "padding_mask", else token id != 0).
        dropout: dropout rate before the head, in [0, 1).
        activation: head activation ("softmax", or None for logits).
        name: the model's name; default `"<backbone>_classifier"`.
        grey_to_rgb: how grey inputs become RGB: "replicate", "learned" (a trainable 1x1
            colour map) or "jet" (a fixed pseudo-colour map); see `ImageInputAdapter`.
        **backbone_kwargs: passed to `load_backbone` (registry names only).

    Returns:
        A `keras.Model` whose nested backbone is the layer named "backbone" and whose
        classification layer is the `Dense` named "head".

    Raises:
        ValueError: if `num_classes` < 2, `input_shape` is not (height, width, 1 or 3) for
            images or (sequence_length,) for text, `pooling` / `dropout` / `weights` are
            invalid, `backbone` is unknown, or a text backbone has several positional inputs
            or outputs without a "sequence_output".

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> model.name, model.output_shape
    ('simple_cnn_classifier', (None, 3))
    >>> [layer.name for layer in model.layers]
    ['image', 'input_adapter', 'preprocessing', 'backbone', 'pool', 'dropout', 'head']
    >>> encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     vocabulary_size=20, sequence_length=6, embedding_dim=8, num_layers=2, num_heads=2)
    >>> text = keras_transfer.recipes.build_classifier(encoder, num_classes=2)
    >>> [layer.name for layer in text.layers], text.output_shape
    (['token_ids', 'backbone', 'dropout', 'head'], (None, 2))
    """
    num_classes = validation.check_int_at_least(
        "num_classes", num_classes, 2, "A classifier needs at least two classes."
    )
    validation.check_one_of("pooling", pooling, ("auto", "avg", "max"))
    dropout = validation.check_fraction("dropout", dropout)
    if text_lib.is_text_backbone(backbone):
        return _build_text_classifier(backbone, num_classes, input_shape, weights, pooling, dropout, activation, name)
    _check_input_shape(input_shape)
    spec, base, target = _backbone_and_size(backbone, input_shape, weights, image_size, backbone_kwargs)
    preprocess_mode = spec.preprocess if spec else "none"
    base.name = BACKBONE_LAYER_NAME

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = ImageInputAdapter(
        target_size=target, channels=3, grey_to_rgb=grey_to_rgb, value_range=value_range, name="input_adapter"
    )(inputs)
    x = BackbonePreprocessing(preprocess_mode, value_range, name="preprocessing")(x)
    x = base(x, training=False)
    if pooling in ("auto", "avg"):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 head: softmax and logits stay finite under mixed_float16.
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name=HEAD_LAYER_NAME)(x)
    model_name = name or f"{spec.name if spec else base.name}_classifier"
    return keras.Model(inputs, outputs, name=model_name)


def _build_text_classifier(backbone, num_classes, input_shape, weights, pooling, dropout, activation, name):
    """`build_classifier` for a text backbone: token ids -> backbone -> pooling -> dropout -> head."""
    if weights is not None:
        raise ValueError(
            "`weights` must be None for a text backbone (load its weights yourself, e.g. with keras-hub's "
            f"from_preset). Received: weights={weights!r}"
        )
    input_shape = text_lib.check_sequence_length(input_shape)
    base = text_lib.as_text_model(backbone, input_shape)
    model_name = name or f"{base.name}_classifier"
    base.name = BACKBONE_LAYER_NAME
    inputs = text_lib.text_inputs(base, input_shape)
    x = base(inputs, training=False)
    x = text_lib.pool_text_features(x, inputs, pooling)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 head: softmax and logits stay finite under mixed_float16.
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name=HEAD_LAYER_NAME)(x)
    return keras.Model(inputs, outputs, name=model_name)


def _check_input_shape(input_shape):
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or input_shape[-1] not in (1, 3)
        or any(v is not None and int(v) < 1 for v in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with 1 (grayscale) or 3 (RGB) channels. "
            f"Received: input_shape={input_shape!r}"
        )


def _backbone_and_size(backbone, input_shape, weights, image_size, backbone_kwargs):
    """`(spec or None, backbone model, (height, width) it sees)` for `build_classifier`."""
    if isinstance(backbone, keras.Model):
        if weights is not None:
            raise ValueError(
                "`weights` must be None when `backbone` is a built model (load its weights yourself). "
                f"Received: weights={weights!r}"
            )
        return None, backbone, tuple(backbone.input_shape[1:3])
    spec = backbones_lib.get_spec(backbone)
    height, width = int(input_shape[0]), int(input_shape[1])
    if image_size is None:
        target = (max(height, spec.min_size), max(width, spec.min_size))
    else:
        target = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    base = backbones_lib.load_backbone(backbone, (*target, 3), weights=weights, **backbone_kwargs)
    return spec, base, target


def get_backbone(model):
    """The nested backbone of a `build_classifier` model.

    Args:
        model: a model with a nested layer named "backbone".

    Returns:
        The backbone layer (a `keras.Model`).

    Raises:
        ValueError: if `model` has no layer named "backbone".

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> keras_transfer.recipes.get_backbone(model).output_shape
    (None, 4, 4, 64)
    """
    try:
        return model.get_layer(BACKBONE_LAYER_NAME)
    except ValueError as error:
        raise ValueError(
            f"`model` must contain a nested backbone layer named '{BACKBONE_LAYER_NAME}' (as build_classifier "
            f"makes). Received: model {model.name!r} with layers {[layer.name for layer in model.layers]}"
        ) from error


def get_head(model):
    """The classification `Dense` of a `build_classifier` model.

    Args:
        model: a model with a `Dense` layer named "head".

    Returns:
        The head layer.

    Raises:
        ValueError: if `model` has no layer named "head".

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> keras_transfer.recipes.get_head(model).units
    3
    """
    try:
        return model.get_layer(HEAD_LAYER_NAME)
    except ValueError as error:
        raise ValueError(
            f"`model` must contain a Dense head named '{HEAD_LAYER_NAME}' (as build_classifier makes). "
            f"Received: model {model.name!r} with layers {[layer.name for layer in model.layers]}"
        ) from error


def feature_extractor(model, layer=None):
    """A model from the classifier's input to its pooled features, or to one backbone layer's output.

    The new model shares the classifier's layers and weights. With `layer`, the
    classifier's input layers before the backbone (input adapter, preprocessing) are
    applied, then the backbone up to that layer (unpooled features, e.g. to probe an
    early block).

    Args:
        model: a model with a `Dense` layer named "head" (and, with `layer`, a nested
            "backbone" as `build_classifier` makes).
        layer: None (the features that feed the head), or the name of a backbone layer.

    Returns:
        A `keras.Model` named `"<model name>_features"` (or `"<model name>_<layer>_features"`).

    Raises:
        ValueError: if `model` has no layer named "head", or `layer` names no layer of
            the backbone.

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> keras_transfer.recipes.feature_extractor(model).output_shape
    (None, 64)
    >>> keras_transfer.recipes.feature_extractor(model, layer="block2_pool").output_shape
    (None, 4, 4, 32)
    """
    head = get_head(model)
    if layer is None:
        return keras.Model(_graph_inputs(model), head.input, name=f"{model.name}_features")
    backbone = get_backbone(model)
    names = [sublayer.name for sublayer in backbone.layers]
    if layer not in names:
        raise ValueError(
            f"`layer` must name a layer of the backbone {backbone.name!r}. Received: layer={layer!r}. Layers: {names}"
        )
    part = keras.Model(backbone.inputs, backbone.get_layer(layer).output)
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x = inputs
    for sublayer in model.layers[: model.layers.index(backbone)]:
        if not isinstance(sublayer, keras.layers.InputLayer):
            x = sublayer(x)
    return keras.Model(inputs, part(x), name=f"{model.name}_{layer}_features")


def replace_head(model, num_classes, activation="softmax", copy=True, name=None):
    """A new classifier for `num_classes` on the features of `model` (the transfer step).

    With `copy=True` (default) the backbone is an independent copy (weights and trainable
    flags copied), so the source model is left untouched; with `copy=False` both models
    share the backbone's variables.

    Args:
        model: a model with a `Dense` layer named "head".
        num_classes: classes of the new task (>= 2).
        activation: activation of the new head ("softmax", or None for logits).
        copy: copy the layers below the head (True) or share them (False).
        name: the new model's name; default `"<model name>_transfer"`.

    Returns:
        A new `keras.Model` whose last layer is a new `Dense` named "head".

    Raises:
        ValueError: if `num_classes` is below 2 or `model` has no layer named "head".

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> new = keras_transfer.recipes.replace_head(model, num_classes=5)
    >>> new.name, new.output_shape
    ('simple_cnn_classifier_transfer', (None, 5))
    """
    num_classes = validation.check_int_at_least("num_classes", num_classes, 2)
    source = model
    if copy:
        source = keras.models.clone_model(model)
        source.set_weights(model.get_weights())
    features = get_head(source).input
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name=HEAD_LAYER_NAME)(features)
    return keras.Model(_graph_inputs(source), outputs, name=name or f"{model.name}_transfer")


def _graph_inputs(model):
    """`model`'s inputs as it takes them: its dict of named inputs (keras-hub text backbones), else the list."""
    try:
        structure = model.input
    except AttributeError:  # a Sequential model built from an input shape has no `input` tensor
        return model.inputs
    return structure if isinstance(structure, dict) else model.inputs
