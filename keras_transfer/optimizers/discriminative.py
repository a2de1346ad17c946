"""Discriminative (per-layer) learning rates on Keras' own optimizers.

`discriminative_optimizer(Adam(1e-3), [("^head/", 1.0), ("^block1_", 0.1)])` returns an
Adam whose update for each variable uses `learning_rate * multiplier`, the
multiplier of the first regex matching the variable's path (1.0 when none does).
The multiplier scales the step itself, so it is exact for adaptive optimizers
(Adam, RMSprop...) where scaling gradients would change nothing. It works on
Keras 3.13 (no `MultiOptimizer`) and later, saves with the model and keeps one
optimizer state; the same mechanism gives layer-wise learning-rate decay.
Weight decay (AdamW) is applied at the base rate.
"""

import re

import keras

from keras_transfer.utils import validation

_BASES = ("SGD", "Adam", "AdamW", "RMSprop", "Adamax", "Nadam", "Adagrad", "Adadelta", "Lion", "Ftrl")
_CLASSES = {}


def _check_multipliers(multipliers):
    checked = []
    for item in multipliers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                f"`learning_rate_multipliers` must be a list of (regex, multiplier) pairs. Received an entry {item!r}"
            )
        pattern, value = item
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ValueError(
                f"`learning_rate_multipliers` patterns must be regular expressions. Received: {pattern!r} ({error})"
            ) from error
        checked.append((str(pattern), validation.check_non_negative_float("multiplier", value)))
    return checked


def _make_class(base):
    class Discriminative(base):
        def __init__(self, *args, learning_rate_multipliers=(), **kwargs):
            super().__init__(*args, **kwargs)
            self.learning_rate_multipliers = _check_multipliers(learning_rate_multipliers)
            self._compiled_multipliers = [(re.compile(p), m) for p, m in self.learning_rate_multipliers]
            self._multiplier_cache = {}

        def multiplier_for(self, variable):
            path = getattr(variable, "path", None) or variable.name
            # Under TensorFlow `update_step` gets the backend variable, named "<path>:0": without the
            # suffix, patterns anchored at the end ("^block1/kernel$") match as on the Keras variable.
            path = re.sub(r":\d+$", "", path)
            if path not in self._multiplier_cache:
                value = 1.0
                for pattern, multiplier in self._compiled_multipliers:
                    if pattern.search(path):
                        value = multiplier
                        break
                self._multiplier_cache[path] = value
            return self._multiplier_cache[path]

        def update_step(self, gradient, variable, learning_rate):
            multiplier = self.multiplier_for(variable)
            if multiplier != 1.0:
                learning_rate = learning_rate * multiplier
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            config = super().get_config()
            config["learning_rate_multipliers"] = [list(item) for item in self.learning_rate_multipliers]
            return config

    name = f"Discriminative{base.__name__}"
    Discriminative.__name__ = name
    Discriminative.__qualname__ = name
    return keras.saving.register_keras_serializable(package="keras_transfer")(Discriminative)


for _name in _BASES:
    if hasattr(keras.optimizers, _name):
        _CLASSES[_name] = _make_class(getattr(keras.optimizers, _name))
        globals()[f"Discriminative{_name}"] = _CLASSES[_name]


def discriminative_optimizer(optimizer, learning_rate_multipliers):
    """A copy of `optimizer` with per-variable learning-rate multipliers.

    The update of each variable uses `learning_rate * multiplier`, the multiplier
    of the first regular expression in `learning_rate_multipliers` that matches
    the variable's path (1.0 when none does). The multiplier scales the step
    itself, so it is exact for adaptive optimizers (Adam, RMSprop, ...), where
    scaling the gradients would change nothing. The result is a Keras optimizer
    of a registered subclass (e.g. `DiscriminativeAdam`) that saves with the
    model and keeps one optimizer state. Weight decay (AdamW) is applied at the
    base rate.

    Args:
        optimizer: a Keras optimizer instance (its configuration is copied, not
            its state) or a name such as "adam".
        learning_rate_multipliers: a list of `(regex, multiplier)` pairs with
            non-negative multipliers, e.g. `[("^head/", 1.0), ("^block1_", 0.1)]`.

    Returns:
        A new optimizer of the same kind and configuration.

    Raises:
        ValueError: if `optimizer` is not one of Keras's optimizers listed
            above, or a pair is not a valid regular expression and a
            non-negative number.

    Reference:
        Howard & Ruder, "Universal Language Model Fine-tuning for Text
        Classification", ACL 2018 (discriminative fine-tuning).

    Example:

    >>> optimizer = keras_transfer.optimizers.discriminative_optimizer(
    ...     keras.optimizers.SGD(0.1), [("backbone", 0.1)])
    >>> type(optimizer).__name__
    'DiscriminativeSGD'
    >>> backbone = keras.Variable([1.0], name="backbone_kernel")
    >>> head = keras.Variable([1.0], name="head_kernel")
    >>> optimizer.apply([np.ones(1, "float32"), np.ones(1, "float32")], [backbone, head])
    >>> np.round(backbone.numpy(), 3), np.round(head.numpy(), 3)
    (array([0.99], dtype=float32), array([0.9], dtype=float32))
    """
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    base_name = type(optimizer).__name__.replace("Discriminative", "")
    if base_name not in _CLASSES:
        raise ValueError(
            f"`optimizer` must be one of Keras' optimizers {sorted(_CLASSES)}. Received: optimizer={optimizer!r}"
        )
    config = optimizer.get_config()
    config["learning_rate_multipliers"] = learning_rate_multipliers
    return _CLASSES[base_name].from_config(config)
