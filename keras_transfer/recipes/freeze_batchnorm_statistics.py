"""Fine-tuning with BatchNorm statistics frozen and its affine part trained."""

import keras

from keras_transfer.layers.frozen_batch_normalization import FrozenBatchNormalization
from keras_transfer.recipes.adapters import _check_model
from keras_transfer.recipes.adapters import _is_plain_batchnorm
from keras_transfer.recipes.adapters import _iter_models
from keras_transfer.recipes.adapters import clone_graph
from keras_transfer.recipes.adapters import copy_weights


def freeze_batchnorm_statistics(model):
    """A copy of `model` with every BatchNormalization replaced by `FrozenBatchNormalization`.

    Nested functional models (a keras.applications backbone inside a `build_classifier`
    model) are included. Weights and `trainable` flags are copied, so the copy's outputs
    equal the original's at inference; in `fit`, the BatchNorm layers that are trainable
    train `gamma` / `beta` while normalising with the pretraining statistics, which never
    change (a trainable Keras 3 BatchNormalization would use batch statistics instead; see
    `FrozenBatchNormalization`). A full fine-tune with "BN statistics frozen, affine
    trained" is therefore::

        model = freeze_batchnorm_statistics(model)
        unfreeze_backbone(model, train_batchnorm=True)  # gamma/beta train, statistics stay
        model.compile(...)

    The input model is not modified. Raises a ValueError for models whose graph cannot be
    re-run (subclassed models) and for models without a BatchNormalization.
    """
    _check_model(model)
    if not any(_is_plain_batchnorm(layer) for sub in _iter_models(model) for layer in sub.layers):
        raise ValueError(
            "`model` must contain a keras.layers.BatchNormalization to freeze. Received: model "
            f"{model.name!r} without one (or with only FrozenBatchNormalization layers)."
        )

    def clone_layer(layer):
        if _is_plain_batchnorm(layer):
            return FrozenBatchNormalization.from_batch_normalization(layer)  # weights copied
        return layer.__class__.from_config(layer.get_config())

    new_model, pairs = clone_graph(model, clone_layer=clone_layer)
    copy_weights([(new, orig) for new, orig in pairs if type(new) is type(orig)])
    # Nested models first (their flag propagates to their layers), then every leaf layer.
    for new_sub, orig_sub in zip(_iter_models(new_model), _iter_models(model)):
        new_sub.trainable = orig_sub.trainable
    for new, orig in pairs:
        new.trainable = orig.trainable
        if type(new) is type(orig) and len(new.weights) == len(orig.weights):
            for new_var, orig_var in zip(new.weights, orig.weights):
                new_var.trainable = orig_var.trainable  # e.g. LoRA: only the factors train
    return new_model
