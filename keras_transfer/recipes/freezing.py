"""Freezing and unfreezing: whole backbone, top N layers, named blocks, surgical fine-tuning.

Keras fixes the trainable set when a model is compiled: recompile after any of these.
"""

import keras

from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes.classifier import get_backbone
from keras_transfer.recipes.parameter_report import trainable_report  # noqa: F401 (its home before)
from keras_transfer.utils import validation

SURGICAL_CHOICES = ("all", "first", "middle", "last")


def freeze_backbone(model):
    """Freezes the whole backbone (the linear-probe setting).

    Sets `trainable = False` on the nested backbone, so only the head (and any
    layer outside the backbone) trains. Recompile afterwards.

    Args:
        model: a `build_classifier` model.

    Returns:
        `model`.

    Raises:
        ValueError: if `model` has no nested layer named "backbone".

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> model = keras_transfer.recipes.freeze_backbone(model)
    >>> [w.path for w in model.trainable_weights]
    ['head/kernel', 'head/bias']
    """
    get_backbone(model).trainable = False
    return model


def select_blocks(backbone, blocks):
    """Names of the backbone blocks chosen by `blocks`.

    The blocks of surgical fine-tuning: "first", "middle" and "last" cut the
    backbone's blocks into thirds, the stem joining the first third and the top the
    last.

    Args:
        backbone: a headless backbone model.
        blocks: "all"; "first", "middle" or "last"; or a non-empty list of block
            names (see `keras_transfer.recipes.backbone_blocks`).

    Returns:
        A list of block names.

    Raises:
        ValueError: if `blocks` is another string, an empty list, or names a block
            the backbone does not have.

    Reference:
        Lee et al., "Surgical Fine-Tuning Improves Adaptation to Distribution
        Shifts", ICLR 2023.

    Example:

    >>> backbone = keras_transfer.recipes.load_backbone("simple_cnn", (32, 32, 3))
    >>> keras_transfer.recipes.select_blocks(backbone, "all")
    ['block1', 'block2', 'block3']
    >>> keras_transfer.recipes.select_blocks(backbone, "last")
    ['block3']
    """
    grouped = backbones_lib.backbone_blocks(backbone)
    names = list(grouped)
    if isinstance(blocks, str):
        validation.check_one_of(
            "blocks", blocks, SURGICAL_CHOICES, "Or pass a list of block names: " + ", ".join(names)
        )
        if blocks == "all":
            return names
        inner = [n for n in names if n not in ("stem", "top")]
        third = max(1, round(len(inner) / 3))
        parts = {
            "first": (["stem"] if "stem" in names else []) + inner[:third],
            "middle": inner[third : len(inner) - third] or inner[third : third + 1],
            "last": inner[len(inner) - third :] + (["top"] if "top" in names else []),
        }
        return parts[blocks]
    blocks = list(blocks)
    unknown = [b for b in blocks if b not in grouped]
    if not blocks or unknown:
        raise ValueError(
            f"`blocks` must name blocks of the backbone. Received unknown block(s) {unknown or blocks}. "
            f"Available: {', '.join(names)}"
        )
    return blocks


def unfreeze_backbone(model, blocks="all", top_n_layers=None, train_batchnorm=False):
    """Makes the chosen part of the backbone trainable and freezes the rest.

    Recompile afterwards (`compile_for_fine_tuning`).

    Args:
        model: a `build_classifier` model.
        blocks: "all", "first", "middle", "last" (surgical fine-tuning) or a list of block
            names; for a text backbone, its transformer blocks (see `backbone_blocks`).
        top_n_layers: instead of blocks, unfreeze the last N layers with weights (for a
            split transformer layer, its sublayers in block order).
        train_batchnorm: BatchNorm layers stay frozen by default (the Keras fine-tuning
            guide's advice): a frozen Keras 3 BatchNormalization runs in inference mode, so
            its moving statistics never change. With `True`, gamma/beta train AND the layers
            use batch statistics and update their moving statistics during `fit` (Keras 3
            passes `fit`'s `training=True` through the backbone's recorded `training=False`),
            unless the model came through `freeze_batchnorm_statistics` (its
            `FrozenBatchNormalization` layers train gamma/beta with frozen statistics).

    Returns:
        `model`.

    Raises:
        ValueError: if `top_n_layers` is not a positive integer at most the number
            of backbone layers with weights, or as `select_blocks` for `blocks`.

    Reference:
        Lee et al., "Surgical Fine-Tuning Improves Adaptation to Distribution
        Shifts", ICLR 2023.

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> model = keras_transfer.recipes.unfreeze_backbone(model, blocks="last")
    >>> [w.path for w in model.trainable_weights]
    ['block3_conv/kernel', 'head/kernel', 'head/bias']
    """
    backbone = get_backbone(model)
    backbone.trainable = True
    grouped = backbones_lib.backbone_blocks(backbone, own_variables=True)
    members = [m for group in grouped.values() for m in group]
    layers = [m for m in members if isinstance(m, keras.layers.Layer) and m.weights]
    own = [m for m in members if not isinstance(m, keras.layers.Layer)]
    if top_n_layers is not None:
        top_n_layers = validation.check_positive_int("top_n_layers", top_n_layers)
        if top_n_layers > len(layers):
            raise ValueError(
                f"`top_n_layers` must be at most {len(layers)} (the backbone's layers with weights). "
                f"Received: top_n_layers={top_n_layers}"
            )
        if not own:  # the backbone's own layer order, as before blocks were split
            layers = [layer for layer in backbone.layers if layer.weights]
        chosen = {id(layer) for layer in layers[len(layers) - top_n_layers :]}
        chosen |= {id(v) for v in own} if top_n_layers == len(layers) else set()
    else:
        chosen = {id(m) for name in select_blocks(backbone, blocks) for m in grouped[name]}
    for member in members:
        if not isinstance(member, keras.layers.Layer):
            member.trainable = id(member) in chosen  # a split layer's own variable (position embedding)
            continue
        trainable = id(member) in chosen
        if isinstance(member, keras.layers.BatchNormalization) and not train_batchnorm:
            trainable = False
        member.trainable = trainable
    return model
