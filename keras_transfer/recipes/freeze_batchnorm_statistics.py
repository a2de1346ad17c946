"""Fine-tuning with BatchNorm statistics frozen and its affine part trained."""

import keras

from keras_transfer.layers.frozen_batch_normalization import FrozenBatchNormalization
from keras_transfer.utils import model_graph


def is_plain_batchnorm(layer):
    """Whether `layer` is a Keras `BatchNormalization` (not already a `FrozenBatchNormalization`)."""
    return isinstance(layer, keras.layers.BatchNormalization) and not isinstance(layer, FrozenBatchNormalization)


def clone_with_frozen_batchnorm(layer):
    """A `clone_graph` clone function: BatchNorm becomes `FrozenBatchNormalization` (weights copied).

    Other layers are cloned from their config, without weights.
    """
    if is_plain_batchnorm(layer):
        return FrozenBatchNormalization.from_batch_normalization(layer)  # weights copied
    return model_graph.clone_layer_from_config(layer)


def freeze_batchnorm_statistics(model):
    """A copy of `model` with every BatchNormalization replaced by `FrozenBatchNormalization`.

    Nested functional models (a keras.applications backbone inside a `build_classifier`
    model) are included. Weights and `trainable` flags are copied, so the copy's outputs
    equal the original's at inference; in `fit`, the BatchNorm layers that are trainable
    train `gamma` / `beta` while normalising with the pretraining statistics, which never
    change (a trainable Keras 3 BatchNormalization would use batch statistics instead; see
    `FrozenBatchNormalization`). A full fine-tune with "BN statistics frozen, affine
    trained" is therefore this function, then `unfreeze_backbone(model,
    train_batchnorm=True)` (gamma/beta train, statistics stay), then `compile`.
    The input model is not modified.

    Args:
        model: a built Functional or Sequential model with at least one
            `keras.layers.BatchNormalization`.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model
            (a subclassed model's graph cannot be re-run) or has no
            BatchNormalization to freeze.

    Example:

    >>> model = keras_transfer.recipes.build_classifier(
    ...     "simple_cnn", num_classes=3, input_shape=(16, 16, 1))
    >>> frozen = keras_transfer.recipes.freeze_batchnorm_statistics(model)
    >>> backbone = keras_transfer.recipes.get_backbone(frozen)
    >>> [type(layer).__name__ for layer in backbone.layers[1:4]]
    ['Conv2D', 'FrozenBatchNormalization', 'ReLU']
    """
    model_graph.check_graph_model(model)
    if not any(is_plain_batchnorm(layer) for sub in model_graph.iter_models(model) for layer in sub.layers):
        raise ValueError(
            "`model` must contain a keras.layers.BatchNormalization to freeze. Received: model "
            f"{model.name!r} without one (or with only FrozenBatchNormalization layers)."
        )
    new_model, pairs = model_graph.clone_graph(model, clone_layer=clone_with_frozen_batchnorm)
    model_graph.copy_weights([(new, orig) for new, orig in pairs if type(new) is type(orig)])
    # Nested models first (their flag propagates to their layers), then every leaf layer.
    for new_sub, orig_sub in zip(model_graph.iter_models(new_model), model_graph.iter_models(model)):
        new_sub.trainable = orig_sub.trainable
    for new, orig in pairs:
        new.trainable = orig.trainable
        if type(new) is type(orig) and len(new.weights) == len(orig.weights):
            for new_var, orig_var in zip(new.weights, orig.weights):
                new_var.trainable = orig_var.trainable  # e.g. LoRA: only the factors train
    return new_model
