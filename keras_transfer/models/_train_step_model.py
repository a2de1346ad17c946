"""Private base of the models that write their own `train_step`.

What every such model repeats otherwise:

- `compile` builds the optimizer at once when the model is built, and `fit` does
  when the model was built after `compile` (e.g. called on a batch). Keras otherwise
  creates the optimizer variables inside the first traced step (as it does only
  without a distribution strategy): a `fit` that failed on bad data cannot be
  retried on the same model ("Creating variables on a non-first call"), and each
  variable lifted out of the trace costs about 0.1 s (a third of CLIP's first
  `fit` in tests/model_zoo.py).
- A model that overrides `compile` must also override `compile_from_config`, or
  Keras skips it and a reloaded `.keras` model comes back uncompiled.
- `get_config` / `from_config` serialise the constructor arguments that hold Keras
  objects (encoders, heads, augmenters): a subclass lists them once in
  `keras_object_args` and writes the plain arguments by hand in `get_config`.
- Logs: a custom step updates the trackers its `metrics` property lists and
  returns `self.get_metrics_result()` (Keras's own `{name: result}` of
  `self.metrics`). Compiled metrics (Keras's own step, or a custom step calling
  `compute_metrics`) read NaN once the predictions or the weights are not finite,
  so `keras.callbacks.TerminateOnNaN` stops at that batch (`_finite_logs`).
"""

import keras

from keras_transfer.models._finite_logs import compute_metrics_nan_unless_finite


class TrainStepModel(keras.Model):
    """A `keras.Model` whose `compile` builds the optimizer, with its config by declaration.

    Subclasses set `keras_object_args` to the names of the constructor arguments
    that are Keras objects (or None), each stored on the attribute of the same name,
    and add their plain arguments in `get_config`. A subclass that changes
    `compile`'s defaults overrides `compile` and calls `super().compile(...)`.
    """

    keras_object_args = ()

    def compile(self, *args, **kwargs):
        """`keras.Model.compile` (same arguments), then the optimizer is built for the trainable variables."""
        super().compile(*args, **kwargs)
        self.build_optimizer()

    def fit(self, *args, **kwargs):
        """`keras.Model.fit` (same arguments), after the optimizer is built if the model is."""
        self.build_optimizer()
        return super().fit(*args, **kwargs)

    def build_optimizer(self):
        """Creates the optimizer's variables now, when the model and its optimizer exist."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and self.built and not optimizer.built:
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        """Keras's own (the arguments `compile` received), declared next to `compile_from_config`."""
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Compiles from `get_compile_config()` (Keras skips models that override `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras's compiled metrics; NaN for all of them once predictions or weights are not finite."""
        return compute_metrics_nan_unless_finite(self, super().compute_metrics, x, y, y_pred, sample_weight)

    def get_config(self):
        config = super().get_config()
        for name in self.keras_object_args:
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in cls.keras_object_args:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)
