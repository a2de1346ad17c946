"""A callback that anneals the factor of every `GradientReversal` layer during `fit`."""

import math

import keras

from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.utils import validation
from keras_transfer.utils.model_graph import iter_layers

_SCHEDULES = ("ganin", "constant", "linear")


def ganin_factor(progress, gamma=10.0):
    """The adaptation factor of domain-adversarial training, `2 / (1 + exp(-gamma p)) - 1`.

    It rises from 0 at the start of training (`p = 0`), when the domain
    classifier's signal is still noise, towards 1 (`p = 1`).

    Args:
        progress: the training progress `p`, usually in [0, 1].
        gamma: the steepness γ (10 in the paper).

    Returns:
        The factor λ_p, a Python float.

    Reference:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR
        2016 (§5.2.2).

    Example:

    >>> keras_transfer.callbacks.ganin_factor(0.0)
    0.0
    >>> round(keras_transfer.callbacks.ganin_factor(0.5), 3)
    0.987
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def find_gradient_reversal_layers(model):
    """All `GradientReversal` layers in `model`, nested models included (each once).

    Args:
        model: a Keras layer or model.

    Returns:
        A list of `keras_transfer.layers.GradientReversal` layers.
    """
    return [layer for layer in [model, *iter_layers(model)] if isinstance(layer, GradientReversal)]


class GradientReversalSchedule(keras.callbacks.Callback):
    """Sets the factor of the model's `GradientReversal` layers before every training step.

    With progress `p = step / total_steps` in [0, 1] (clipped), the factor is
    `max_factor * s(p)` where `s` is

    - `"ganin"`: `2 / (1 + exp(-gamma * p)) - 1` (Ganin et al. 2016, γ = 10): starts at 0,
      so the noisy early domain signal does not disturb the features, and approaches 1;
    - `"constant"`: 1;
    - `"linear"`: p;
    - a callable `s(p) -> float` of your own (must return a non-negative finite number).

    `total_steps` defaults to `epochs * steps_per_epoch` of the `fit` call. The factor
    lives in a non-trainable weight, so changing it never retraces the train step. The
    factor in use at the end of each epoch is logged as `grl_factor`.

    The step is derived from the epoch that `fit` runs, `epoch * steps_per_epoch + batch`,
    so a resumed run continues the schedule where it stopped: after
    `keras.callbacks.BackupAndRestore` restores the epoch, or with
    `fit(..., initial_epoch=k)` after reloading a `.keras` file. When `fit` does not
    know the number of steps per epoch, a run that starts at `initial_epoch > 0` takes
    the optimizer's `iterations` (restored with the weights) as the steps already done,
    which assumes that the scheduled training started at iteration 0 and is close but
    not exact (Keras counts one more iteration per epoch of unknown length); pass
    `steps_per_epoch` to `fit` for an exact resume.

    Args:
        schedule: `"ganin"`, `"constant"`, `"linear"` or a callable of the progress.
        gamma: γ of the `"ganin"` schedule (positive).
        max_factor: the factor reached at the end of training (non-negative).
        total_steps: number of training steps that make up `p = 1`; `None` reads it
            from `fit` (needed when the dataset has an unknown length).
        layers: the `GradientReversal` layers to drive; `None` finds all of them in
            the model.

    Raises:
        ValueError: if `schedule` is unknown, `gamma` or `total_steps` is not
            positive, `max_factor` is negative, or `layers` holds another kind
            of layer; when training starts, if the model has no
            `GradientReversal` layer or the number of steps is unknown.

    Reference:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016.

    Example:

    >>> schedule = keras_transfer.callbacks.GradientReversalSchedule("ganin", total_steps=100)
    >>> [round(schedule.factor_at(p), 3) for p in (0.0, 0.1, 1.0)]
    [0.0, 0.462, 1.0]
    >>> inputs = keras.Input((4,))
    >>> features = keras.layers.Dense(8)(inputs)
    >>> reversed_features = keras_transfer.layers.GradientReversal()(features)
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(reversed_features))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> callback = keras_transfer.callbacks.GradientReversalSchedule("linear")
    >>> history = model.fit(np.ones((8, 4)), np.zeros((8, 1)), batch_size=4, epochs=2,
    ...                     callbacks=[callback], verbose=0)
    >>> history.history["grl_factor"]  # the factor of each epoch's last step (1 and 3 of 4)
    [0.25, 0.75]
    """

    def __init__(self, schedule="ganin", gamma=10.0, max_factor=1.0, total_steps=None, layers=None):
        super().__init__()
        if not callable(schedule):
            validation.check_one_of(
                "schedule",
                schedule,
                _SCHEDULES,
                fix="Or pass a callable mapping the training progress in [0, 1] to a factor",
            )
        self.schedule = schedule
        self.gamma = validation.check_positive_float("gamma", gamma)
        self.max_factor = validation.check_non_negative_float(
            "max_factor", max_factor, fix="The gradient is multiplied by -factor; use 0 to block it"
        )
        self.total_steps = None if total_steps is None else validation.check_positive_int("total_steps", total_steps)
        if layers is not None:
            layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
            for layer in layers:
                if not isinstance(layer, GradientReversal):
                    raise ValueError(
                        "`layers` must hold `GradientReversal` layers. "
                        f"Received: layers containing {type(layer).__name__}"
                    )
        self._layers_arg = layers
        self._layers = []
        self._total = None
        self._offset = 0
        self._last_batch = -1
        self.current_factor = None

    def factor_at(self, progress):
        """The factor for training progress `progress`.

        Args:
            progress: the training progress, clipped to [0, 1].

        Returns:
            `max_factor * s(progress)`, a Python float.

        Raises:
            ValueError: if a callable `schedule` returns a negative, infinite or
                non-numeric value.
        """
        progress = min(max(float(progress), 0.0), 1.0)
        if self.schedule == "ganin":
            value = ganin_factor(progress, self.gamma)
        elif self.schedule == "constant":
            value = 1.0
        elif self.schedule == "linear":
            value = progress
        else:
            value = self.schedule(progress)
            if not validation.is_non_negative_finite(value):
                raise ValueError(
                    f"`schedule` must return a non-negative finite number. Received: schedule({progress:.4f})={value!r}"
                )
        return self.max_factor * float(value)

    def on_train_begin(self, logs=None):
        self._layers = self._layers_arg or find_gradient_reversal_layers(self.model)
        if not self._layers:
            raise ValueError(
                "`GradientReversalSchedule` needs a model with at least one `GradientReversal` "
                f"layer. Received: a model {self.model.name!r} without one. Add "
                "`keras_transfer.layers.GradientReversal` before the domain classifier."
            )
        self._total = self.total_steps
        if self._total is None:
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            if not epochs or not steps:
                raise ValueError(
                    "`total_steps` must be given when `fit` does not know the number of steps "
                    f"per epoch. Received: total_steps=None with epochs={epochs}, steps={steps}. "
                    "Pass `total_steps=epochs * steps_per_epoch` or `steps_per_epoch` to fit."
                )
            self._total = int(epochs) * int(steps)
        self._steps_per_epoch = self.params.get("steps") or None
        self._offset = None
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        # `epoch` is the restored one when fit resumes (BackupAndRestore, initial_epoch).
        self._last_batch = -1
        if self._steps_per_epoch:
            self._offset = int(epoch) * int(self._steps_per_epoch)
        elif self._offset is None:
            self._offset = 0 if epoch == 0 else self._steps_done()

    def _steps_done(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _set(self, step):
        value = self.factor_at(step / self._total)
        for layer in self._layers:
            layer.factor = value
        self.current_factor = value

    def on_train_batch_begin(self, batch, logs=None):
        if self._offset is None:  # a training loop that does not call on_epoch_begin
            self._offset = 0
        # Not counted as done here: with an unknown epoch length, `fit` begins one more
        # batch that finds the data exhausted and never ends.
        self._set(self._offset + batch)

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1, `batch` here is the last step of the execution.
        self._last_batch = batch

    def on_epoch_end(self, epoch, logs=None):
        self._offset = (self._offset or 0) + self._last_batch + 1
        self._last_batch = -1
        if logs is not None and self.current_factor is not None:
            logs["grl_factor"] = self.current_factor
