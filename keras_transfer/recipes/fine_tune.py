"""Linear probe, then fine-tune (LP-FT), with discriminative learning rates."""

import re

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.datasets.pipeline import make_dataset
from keras_transfer.optimizers.discriminative import discriminative_optimizer
from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes.classifier import get_backbone
from keras_transfer.recipes.classifier import get_head
from keras_transfer.recipes.freezing import SURGICAL_CHOICES
from keras_transfer.recipes.freezing import freeze_backbone
from keras_transfer.recipes.freezing import unfreeze_backbone
from keras_transfer.recipes.linear_probe import dict_batches
from keras_transfer.recipes.linear_probe import linear_probe
from keras_transfer.recipes.linear_probe import predict_in_batches
from keras_transfer.recipes.linear_probe import split_dict_inputs
from keras_transfer.utils import validation


def classification_loss(model):
    """Sparse categorical cross-entropy matching the head's activation."""
    activation = getattr(get_head(model).activation, "__name__", "linear")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=activation != "softmax")


def learning_rate_multipliers(model, backbone_multiplier=1.0, layer_decay=None):
    """`(regex, multiplier)` pairs for `discriminative_optimizer`.

    Backbone variables get `backbone_multiplier`; with `layer_decay` (e.g. 0.7) block
    k from the top gets `backbone_multiplier * layer_decay**k` (layer-wise
    learning-rate decay). Everything outside the backbone (the head) keeps the base
    rate.

    Args:
        model: a `build_classifier` model (with a nested layer named "backbone").
        backbone_multiplier: non-negative factor on the base rate for the backbone.
        layer_decay: None, or a factor in (0, 1] applied once more per block from
            the top (blocks as `keras_transfer.recipes.backbone_blocks` finds them:
            transformer blocks for a text backbone).

    Returns:
        A list of `(regex, multiplier)` pairs, one per backbone layer with weights
        (`^<layer name>/`), or per variable (its exact path) for the sublayers of a
        split transformer layer and the variables it holds itself.

    Raises:
        ValueError: if `backbone_multiplier` is negative, `layer_decay` is outside
            (0, 1], or `model` has no nested backbone.

    Reference:
        Howard & Ruder, "Universal Language Model Fine-tuning for Text
        Classification", ACL 2018 (discriminative fine-tuning).

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> keras_transfer.recipes.learning_rate_multipliers(model, 1.0, layer_decay=0.5)[::2]
    [('^block3_conv/', 1.0), ('^block2_conv/', 0.5), ('^block1_conv/', 0.25)]
    """
    backbone_multiplier = validation.check_non_negative_float("backbone_multiplier", backbone_multiplier)
    backbone = get_backbone(model)
    if layer_decay is not None:
        validation.check_fraction("layer_decay", layer_decay, inclusive_low=False, inclusive_high=True)
    blocks = list(backbones_lib.backbone_blocks(backbone, own_variables=True).values())
    if layer_decay is None and not any(isinstance(m, keras.Variable) for group in blocks for m in group):
        layers = [layer for layer in backbone.layers if layer.weights]  # the backbone's own layer order
        return [pattern for layer in layers for pattern in _patterns(layer, backbone_multiplier)]
    pairs = []
    for depth, members in enumerate(reversed(blocks)):
        multiplier = backbone_multiplier * (layer_decay**depth if layer_decay is not None else 1.0)
        for member in members:
            pairs.extend(_patterns(member, multiplier))
    return pairs


def _patterns(member, multiplier):
    """`(regex, multiplier)` for a layer's variables (`^name/` when their paths start so) or a variable."""
    paths = [member.path] if isinstance(member, keras.Variable) else [w.path for w in member.weights]
    if not isinstance(member, keras.Variable) and all(p.startswith(f"{member.name}/") for p in paths):
        return [(f"^{re.escape(member.name)}/", multiplier)] if paths else []
    return [(f"^{re.escape(p)}$", multiplier) for p in paths]


def compile_for_fine_tuning(
    model,
    learning_rate=1e-4,
    optimizer="adam",
    backbone_multiplier=1.0,
    layer_decay=None,
    metrics=("accuracy",),
    **compile_kwargs,
):
    """Compiles `model` for its current trainable set, with discriminative rates when asked.

    The loss is sparse categorical cross-entropy, from logits unless the head ends
    in a softmax. With `backbone_multiplier != 1` or a `layer_decay`, the optimizer
    is wrapped by `keras_transfer.optimizers.discriminative_optimizer` with
    `learning_rate_multipliers(model, ...)`. The optimizer is made in the model's
    `tf.distribute` strategy scope. Recompile after changing what is trainable.

    Args:
        model: a `build_classifier` model.
        learning_rate: the base learning rate (positive).
        optimizer: an optimizer name or instance (its learning rate is set to
            `learning_rate`).
        backbone_multiplier: factor on the rate of the backbone's variables.
        layer_decay: None, or per-block decay of the backbone's rate (see
            `learning_rate_multipliers`).
        metrics: metrics passed to `compile`.
        **compile_kwargs: other arguments of `model.compile`.

    Returns:
        `model`, compiled.

    Raises:
        ValueError: if `learning_rate` is not positive, `model` has no head, or as
            `learning_rate_multipliers` for discriminative rates.

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> model = keras_transfer.recipes.compile_for_fine_tuning(
    ...     model, learning_rate=1e-3, backbone_multiplier=0.1)
    >>> type(model.optimizer).__name__
    'DiscriminativeAdam'
    """
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


def _as_dataset(model, data, y, batch_size, shuffle, seed, num_classes, name):
    if isinstance(data, tf.data.Dataset):
        return data
    named = split_dict_inputs(data, y)
    if named is not None:  # named inputs (keras-hub's token_ids, padding_mask, ...)
        labels = validation.check_labels(np.asarray(named[1]), num_classes, f"{name} labels")
        dataset = dict_batches(named[0], labels, len(labels), name).unbatch()
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True) if shuffle else dataset
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    x, y = as_numpy_xy((data, y) if y is not None else data, name)
    validation.check_model_input(model, x, name)
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
    jit_compile="auto",
):
    """The two-phase recipe: linear probe (head only), then fine-tune (all or chosen blocks).

    Phase 1 freezes the backbone and fits the head: `probe="convex"` solves it exactly
    (`linear_probe`), `probe="fit"` trains it with `fit` for `probe_epochs`, `probe=None`
    skips it (plain fine-tuning). Phase 2 unfreezes `blocks` ("all", "first", "middle",
    "last" or block names), recompiles at `learning_rate` (with `backbone_multiplier` and
    `layer_decay` for discriminative rates) and trains for `epochs`. `blocks="auto"`
    runs phase 2 from the same probed weights once for each of "first", "middle",
    "last" and "all" and keeps the one with the best validation accuracy (surgical
    fine-tuning: which block should move depends on the shift).

    Under `tf.distribute`: build `model` inside `strategy.scope()`; the optimizers are
    then made in that scope (a fresh copy for each `fit`; only the compile that follows
    the convex probe uses `optimizer` itself) and
    `fit` splits each global batch over the replicas (BatchNorm stays frozen unless
    unfrozen elsewhere, so the result equals one device on the same batches).

    Args:
        model: a `build_classifier` model; trained in place.
        train_data: inputs `x` (with `y`): images, int token ids, or a dict of named
            inputs (keras-hub's token_ids / padding_mask / segment_ids); an `(x, y)`
            tuple; or a batched `tf.data.Dataset` of `(x, y)`.
        y: integer labels when `train_data` is an array.
        validation_data: None, an `(x, y)` tuple or a `tf.data.Dataset`.
        probe: "convex", "fit" or None (see above).
        probe_epochs: epochs of the head-only `fit` with `probe="fit"`.
        probe_learning_rate: learning rate of that `fit` (and of the compile after
            the convex probe).
        epochs: fine-tuning epochs (0 stops after the probe).
        learning_rate: base learning rate of the fine-tuning phase.
        blocks: what phase 2 unfreezes (see `keras_transfer.recipes.select_blocks`),
            or "auto" (needs `validation_data`; ties go to the choice with fewer blocks,
            in the order first, middle, last, all).
        backbone_multiplier: factor on the backbone's learning rate.
        layer_decay: None or per-block decay of the backbone's rate.
        optimizer: an optimizer name or instance (copied for each `fit`).
        batch_size: batch size for array inputs and the convex probe's extraction.
        callbacks: Keras callbacks passed to `fit`.
        verbose: verbosity of `fit`.
        seed: seed of the shuffling of array inputs and of the probe's
            cross-validation.
        jit_compile: `compile`'s `jit_compile` for the training phases: "auto" (Keras's
            choice: XLA on a GPU or TPU, not on a CPU), True or False.

    Returns:
        `(model, {"probe": dict or History or None, "fine_tune": History or None})`;
        with `blocks="auto"` also `"blocks": {"chosen": name, "val_accuracy": {name: accuracy}}`,
        "fine_tune" being the chosen run's History.

    Raises:
        ValueError: if `probe` is not "convex", "fit" or None, `epochs` is negative,
            `probe_epochs` is not positive with `probe="fit"`, the labels are not
            class ids of the head, `blocks` names no block of the backbone, or
            `blocks="auto"` comes without `validation_data`.

    Reference:
        Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
        Out-of-Distribution", ICLR 2022 (LP-FT); Lee et al., "Surgical Fine-Tuning
        Improves Adaptation to Distribution Shifts", ICLR 2023; Howard & Ruder,
        "Universal Language Model Fine-tuning for Text Classification", ACL 2018.

    Example:

    >>> x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 1)).astype("float32")
    >>> y = np.arange(12) % 3
    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> model, histories = keras_transfer.recipes.fine_tune(
    ...     model, x, y, epochs=1, blocks="last", batch_size=6, verbose=0)
    >>> sorted(histories["probe"]), histories["fine_tune"].params["epochs"]
    (['C', 'num_features', 'seconds', 'train_accuracy'], 1)
    """
    validation.check_one_of("probe", probe, ("convex", "fit", None))
    if isinstance(blocks, str):
        validation.check_one_of("blocks", blocks, SURGICAL_CHOICES + ("auto",), "Or pass a list of block names")
        if blocks == "auto" and validation_data is None:
            raise ValueError(
                "`validation_data` must be given with blocks='auto' (the choice among first, middle, last "
                "and all blocks is made by validation accuracy). Received: validation_data=None"
            )
    validation.check_non_negative_int("epochs", epochs)
    validation.check_one_of("jit_compile", jit_compile, ("auto", True, False))
    num_classes = get_head(model).units
    histories = {"probe": None, "fine_tune": None}
    train_ds = _as_dataset(model, train_data, y, batch_size, True, seed, num_classes, "train_data")
    val_ds = None
    if validation_data is not None:
        val_ds = _as_dataset(model, validation_data, None, batch_size, False, seed, num_classes, "validation_data")

    freeze_backbone(model)
    if probe == "convex":
        histories["probe"] = _convex_probe(model, train_data, y, batch_size, seed)
        compile_for_fine_tuning(model, learning_rate=probe_learning_rate, optimizer=optimizer, jit_compile=jit_compile)
        if val_ds is not None:
            histories["probe"]["val"] = model.evaluate(val_ds, verbose=0, return_dict=True)
    elif probe == "fit":
        validation.check_positive_int("probe_epochs", probe_epochs)
        compile_for_fine_tuning(
            model,
            learning_rate=probe_learning_rate,
            optimizer=_fresh_optimizer(model, optimizer),
            jit_compile=jit_compile,
        )
        histories["probe"] = model.fit(
            train_ds, validation_data=val_ds, epochs=probe_epochs, callbacks=callbacks, verbose=verbose, shuffle=False
        )

    if epochs:

        def prepare(chosen):
            unfreeze_backbone(model, blocks=chosen)
            compile_for_fine_tuning(
                model,
                learning_rate=learning_rate,
                optimizer=_fresh_optimizer(model, optimizer),
                backbone_multiplier=backbone_multiplier,
                layer_decay=layer_decay,
                jit_compile=jit_compile,
            )

        def phase_2(chosen):
            prepare(chosen)
            return model.fit(
                train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False
            )

        if isinstance(blocks, str) and blocks == "auto":
            histories["fine_tune"], histories["blocks"] = _choose_blocks(model, val_ds, phase_2, prepare)
        else:
            histories["fine_tune"] = phase_2(blocks)
    return model, histories


def _convex_probe(model, train_data, y, batch_size, seed):
    """`linear_probe` on a dataset (streamed once, one batch in memory at a time) or on arrays."""
    if isinstance(train_data, tf.data.Dataset) or split_dict_inputs(train_data, y) is not None:
        return linear_probe(model, train_data, y, batch_size=batch_size, seed=seed)
    x_np, y_np = as_numpy_xy((train_data, y) if y is not None else train_data, "train_data")
    return linear_probe(model, x_np, y_np, batch_size=batch_size, seed=seed)


def _choose_blocks(model, val_ds, phase_2, prepare):
    """`blocks="auto"`: phase 2 from the same start for each surgical choice; the best on validation is kept."""
    start = [np.array(w) for w in model.get_weights()]
    accuracy, best = {}, None
    for choice in ("first", "middle", "last", "all"):
        model.set_weights(start)
        history = phase_2(choice)
        accuracy[choice] = float(model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])
        if best is None or accuracy[choice] > accuracy[best[0]]:  # ties: the earlier (fewer blocks) choice
            best = (choice, [np.array(w) for w in model.get_weights()], history)
    choice, weights, history = best
    model.set_weights(weights)
    prepare(choice)  # the winner's trainable set, compiled afresh for further training
    return history, {"chosen": choice, "val_accuracy": accuracy}


def evaluate_accuracy(model, x, y, batch_size=128):
    """Top-1 accuracy of `model` on arrays (argmax of its outputs).

    The outputs come from `predict_in_batches` (one compiled function per model), so
    evaluating a series of new models in a loop logs no retracing warnings.

    Args:
        model: a single-input Keras model with one output.
        x: an array of inputs.
        y: integer labels.
        batch_size: examples per compiled call.

    Returns:
        The accuracy as a Python float.

    Example:

    >>> model = keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(3, kernel_initializer="zeros")])
    >>> keras_transfer.recipes.evaluate_accuracy(model, np.ones((4, 2)), [0, 0, 1, 2])
    0.5
    """
    predictions = predict_in_batches(model, x, batch_size=batch_size)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y).reshape(-1)))
