"""Linear probe, then fine-tune (LP-FT), with discriminative learning rates."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.datasets.pipeline import make_dataset
from keras_transfer.optimizers.discriminative import discriminative_optimizer
from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes.classifier import get_backbone
from keras_transfer.recipes.classifier import get_head
from keras_transfer.recipes.freezing import freeze_backbone
from keras_transfer.recipes.freezing import unfreeze_backbone
from keras_transfer.recipes.linear_probe import linear_probe
from keras_transfer.recipes.linear_probe import predict_in_batches
from keras_transfer.utils import validation


def classification_loss(model):
    """Sparse categorical cross-entropy matching the head's activation."""
    activation = getattr(get_head(model).activation, "__name__", "linear")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=activation != "softmax")


def learning_rate_multipliers(model, backbone_multiplier=1.0, layer_decay=None):
    """(regex, multiplier) pairs for `discriminative_optimizer`.

    Backbone variables get `backbone_multiplier`; with `layer_decay` (e.g. 0.7) block k from
    the top gets `backbone_multiplier * layer_decay**k` (layer-wise learning-rate decay).
    Everything outside the backbone (the head) keeps the base rate.
    """
    backbone_multiplier = validation.check_non_negative_float("backbone_multiplier", backbone_multiplier)
    backbone = get_backbone(model)
    if layer_decay is None:
        layers = [layer for layer in backbone.layers if layer.weights]
        return [(f"^{_escape(layer.name)}/", backbone_multiplier) for layer in layers]
    validation.check_fraction("layer_decay", layer_decay, inclusive_low=False, inclusive_high=True)
    blocks = list(backbones_lib.backbone_blocks(backbone).items())
    pairs = []
    for depth, (_, layers) in enumerate(reversed(blocks)):
        for layer in layers:
            if layer.weights:
                pairs.append((f"^{_escape(layer.name)}/", backbone_multiplier * layer_decay**depth))
    return pairs


def _escape(name):
    import re

    return re.escape(name)


def compile_for_fine_tuning(
    model,
    learning_rate=1e-4,
    optimizer="adam",
    backbone_multiplier=1.0,
    layer_decay=None,
    metrics=("accuracy",),
    **compile_kwargs,
):
    """Compiles `model` for its current trainable set, with discriminative rates when asked."""
    learning_rate = validation.check_positive_float("learning_rate", learning_rate)
    # Optimizers made here belong to the model's tf.distribute strategy (a model built
    # under `MirroredStrategy.scope()` trains with it wherever `fit` is called).
    with model.distribute_strategy.scope():
        opt = keras.optimizers.get(optimizer) if isinstance(optimizer, str) else optimizer
        opt.learning_rate = learning_rate
        if backbone_multiplier != 1.0 or layer_decay is not None:
            opt = discriminative_optimizer(opt, learning_rate_multipliers(model, backbone_multiplier, layer_decay))
        model.compile(optimizer=opt, loss=classification_loss(model), metrics=list(metrics), **compile_kwargs)
    return model


def _fresh_optimizer(model, optimizer):
    """A new optimizer (name or copy of an instance) in the model's strategy scope."""
    with model.distribute_strategy.scope():
        if isinstance(optimizer, str):
            return keras.optimizers.get(optimizer)
        return optimizer.__class__.from_config(optimizer.get_config())


def _as_dataset(data, y, batch_size, shuffle, seed, num_classes, name):
    if isinstance(data, tf.data.Dataset):
        return data
    x, y = as_numpy_xy((data, y) if y is not None else data, name)
    y = validation.check_labels(y, num_classes, f"{name} labels")
    return make_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)


def fine_tune(
    model,
    train_data,
    y=None,
    validation_data=None,
    probe="convex",
    probe_epochs=5,
    probe_learning_rate=1e-3,
    epochs=5,
    learning_rate=1e-4,
    blocks="all",
    backbone_multiplier=1.0,
    layer_decay=None,
    optimizer="adam",
    batch_size=32,
    callbacks=None,
    verbose=1,
    seed=0,
):
    """The two-phase recipe: linear probe (head only), then fine-tune (all or chosen blocks).

    Phase 1 freezes the backbone and fits the head: `probe="convex"` solves it exactly
    (`linear_probe`), `probe="fit"` trains it with `fit` for `probe_epochs`, `probe=None`
    skips it (plain fine-tuning). Phase 2 unfreezes `blocks` ("all", "first", "middle",
    "last" or block names), recompiles at `learning_rate` (with `backbone_multiplier` and
    `layer_decay` for discriminative rates) and trains for `epochs`.

    Under `tf.distribute`: build `model` inside `strategy.scope()`; the optimizers are
    then made in that scope (a fresh one per phase, `optimizer` itself is not used) and
    `fit` splits each global batch over the replicas (BatchNorm stays frozen unless
    unfrozen elsewhere, so the result equals one device on the same batches).

    Returns:
        (model, {"probe": dict or History or None, "fine_tune": History or None})
    """
    validation.check_one_of("probe", probe, ("convex", "fit", None))
    validation.check_non_negative_int("epochs", epochs)
    num_classes = get_head(model).units
    histories = {"probe": None, "fine_tune": None}
    train_ds = _as_dataset(train_data, y, batch_size, True, seed, num_classes, "train_data")
    val_ds = None
    if validation_data is not None:
        val_ds = _as_dataset(validation_data, None, batch_size, False, seed, num_classes, "validation_data")

    freeze_backbone(model)
    if probe == "convex":
        if isinstance(train_data, tf.data.Dataset):
            # Streamed once, one batch of images in memory at a time (no copy of the split).
            histories["probe"] = linear_probe(model, train_data, batch_size=batch_size, seed=seed)
        else:
            x_np, y_np = as_numpy_xy((train_data, y) if y is not None else train_data, "train_data")
            histories["probe"] = linear_probe(model, x_np, y_np, batch_size=batch_size, seed=seed)
        compile_for_fine_tuning(model, learning_rate=probe_learning_rate, optimizer=optimizer)
        if val_ds is not None:
            histories["probe"]["val"] = model.evaluate(val_ds, verbose=0, return_dict=True)
    elif probe == "fit":
        validation.check_positive_int("probe_epochs", probe_epochs)
        compile_for_fine_tuning(model, learning_rate=probe_learning_rate, optimizer=_fresh_optimizer(model, optimizer))
        histories["probe"] = model.fit(
            train_ds, validation_data=val_ds, epochs=probe_epochs, callbacks=callbacks, verbose=verbose, shuffle=False
        )

    if epochs:
        unfreeze_backbone(model, blocks=blocks)
        opt = _fresh_optimizer(model, optimizer)
        compile_for_fine_tuning(
            model,
            learning_rate=learning_rate,
            optimizer=opt,
            backbone_multiplier=backbone_multiplier,
            layer_decay=layer_decay,
        )
        histories["fine_tune"] = model.fit(
            train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False
        )
    return model, histories


def evaluate_accuracy(model, x, y, batch_size=128):
    """Top-1 accuracy of `model` on arrays (argmax of its outputs).

    The outputs come from `predict_in_batches` (one compiled function per model), so
    evaluating a series of new models in a loop logs no retracing warnings.
    """
    predictions = predict_in_batches(model, x, batch_size=batch_size)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y).reshape(-1)))
