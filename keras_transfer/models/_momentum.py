"""Private helpers of the momentum (EMA) target networks of MoCo and BYOL."""

import math

import keras
from keras import ops

from keras_transfer.utils import distributed


def frozen_clone(model):
    """A copy of `model` (same architecture and weights) whose variables no optimizer trains.

    Only the variables are frozen (`variable.trainable = False`), not the layers:
    `layer.trainable = False` would also switch Keras BatchNormalization to its moving
    statistics even under `training=True`, and target networks use batch statistics.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for variable in clone.weights:
        variable.trainable = False
    return clone


def momentum_pairs(targets, onlines):
    """`(target_variable, online_variable)` pairs of clones made by `frozen_clone`
    (a clone's weights come in the same order as its original's)."""
    pairs = []
    for target, online in zip(targets, onlines):
        pairs.extend(zip(target.weights, online.weights))
    return pairs


def ema_update(pairs, momentum):
    """`target <- momentum * target + (1 - momentum) * online` for the online TRAINABLE variables.

    The target's other variables (BatchNorm moving statistics, frozen layers) are left
    alone: as in the official MoCo and BYOL code, where buffers are not parameters,
    they come from the target's own forward passes. `momentum` may be a tensor. The
    online weights are in sync across replicas, so every replica computes the same new
    target weights and they are written once (`distributed.assign_identical`).
    """
    pairs = [(target, online) for target, online in pairs if online.trainable]
    values = []
    for target, online in pairs:
        if isinstance(momentum, (int, float)):  # `1 - m` in double precision, then cast (as MoCo always did)
            m, rest = momentum, 1.0 - momentum
        else:
            m = ops.cast(momentum, target.dtype)
            rest = 1.0 - m
        values.append(m * ops.convert_to_tensor(target) + rest * ops.cast(online, target.dtype))
    distributed.assign_identical([target for target, _ in pairs], values)


def cosine_momentum(base, step, total_steps):
    """BYOL's schedule: `1 - (1 - base) * (cos(pi * k / K) + 1) / 2` at step k of K (float32 tensor).

    Rises from `base` at step 0 to 1 at step K and stays at 1 afterwards; `total_steps=None`
    keeps `base` throughout.
    """
    if total_steps is None:
        return ops.convert_to_tensor(base, "float32")
    progress = ops.minimum(ops.cast(step, "float32") / float(total_steps), 1.0)
    return 1.0 - (1.0 - base) * (ops.cos(math.pi * progress) + 1.0) / 2.0
