"""The base of curriculum pacing functions: a training step to the share of the easiest examples."""

import keras
from keras import ops

from keras_transfer.utils import validation

# fraction * n within this relative distance of an integer counts as that integer (float64 noise).
_INTEGER_TOLERANCE = 1e-9


@keras.saving.register_keras_serializable(package="keras_transfer")
class PacingFunction:
    """A map from the training step to the fraction of the easiest examples that training may use.

    Curriculum learning sorts the training examples from easiest to hardest and, at
    step `i`, samples each mini-batch from the easiest `g(i)` of them; the pacing
    function `g` grows to the whole dataset. Subclasses give the fraction `g(i) / N`
    (`FixedExponentialPacing`, `StepPacing`, `LinearPacing`); this base adds the count
    of examples, the step from which the whole dataset is used, the check that it is
    reached within `total_steps`, and Keras serialisation
    (`keras.saving.serialize_keras_object` / `deserialize_keras_object`).

    Args:
        starting_fraction: the fraction of the data available at step 0, in (0, 1].
        total_steps: None, or the number of training steps; the pacing must reach the
            whole dataset before this step (otherwise the hardest examples are never
            trained on).
        name: optional name.

    Raises:
        ValueError: if `starting_fraction` is outside (0, 1] or `total_steps` is not a
            positive integer.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2).

    Example:

    >>> pacing = keras_transfer.schedules.StepPacing(0.25, step_length=10)
    >>> isinstance(pacing, keras_transfer.schedules.PacingFunction)
    True
    """

    def __init__(self, starting_fraction, total_steps=None, name=None):
        self.starting_fraction = validation.check_fraction(
            "starting_fraction", starting_fraction, inclusive_low=False, inclusive_high=True
        )
        self.total_steps = None
        if total_steps is not None:
            self.total_steps = validation.check_positive_int(
                "total_steps", total_steps, fix="Use the number of training steps, or None"
            )
        self.name = name

    # ------------------------------------------------------------ subclasses
    def fraction(self, step):
        """The fraction of the sorted data available at `step`, before clipping at 1.

        Args:
            step: a step, or an array of steps (float64 tensor).

        Returns:
            A float64 tensor of the shape of `step`.
        """
        raise NotImplementedError

    @property
    def full_data_step(self):
        """The first step at which the whole dataset is available (an int): 0 if it starts
        full, else the argument that `_set_full_data_steps` set (subclasses may override)."""
        if self.starting_fraction >= 1.0:
            return 0
        return getattr(self, self._full_data_argument)

    # --------------------------------------------------------------- public
    def __call__(self, step):
        """The fraction of the sorted data available at `step`, in (0, 1]."""
        step = ops.maximum(ops.cast(step, "float64"), 0.0)
        clipped = ops.minimum(self.fraction(step), 1.0)
        return ops.where(step >= float(self.full_data_step), ops.ones_like(clipped), clipped)

    def num_examples(self, step, num_examples):
        """The number of easiest examples available at `step`: `ceil(fraction * num_examples)`.

        The count is at least 1 and at most `num_examples`; a product within 1e-9
        (relative) of an integer counts as that integer, so float64 rounding never adds
        an example.

        Args:
            step: a step, or an array or tensor of steps.
            num_examples: the size of the dataset, a positive integer.

        Returns:
            An int64 tensor of the shape of `step`.

        Raises:
            ValueError: if `num_examples` is not a positive integer.

        Example:

        >>> pacing = keras_transfer.schedules.StepPacing(0.25, step_length=10)
        >>> [int(pacing.num_examples(step, 10)) for step in (0, 9, 10)]
        [3, 3, 10]
        """
        num_examples = validation.check_positive_int("num_examples", num_examples)
        product = self(step) * float(num_examples)
        nearest = ops.round(product)
        close = ops.abs(product - nearest) <= _INTEGER_TOLERANCE * ops.maximum(product, 1.0)
        count = ops.where(close, nearest, ops.ceil(product))
        return ops.cast(ops.clip(count, 1.0, float(num_examples)), "int64")

    def _set_full_data_steps(self, argument, value):
        """Sets the positive int `argument` (steps until all data is used), checked against `total_steps`."""
        setattr(self, argument, validation.check_positive_int(argument, value))
        self._full_data_argument = argument
        largest = None if self.total_steps is None else max(self.total_steps - 1, 1)
        self._check_reaches_full_data(argument, value, largest, f"Lower `{argument}` or train for more `total_steps`.")

    def _check_reaches_full_data(self, argument, value, largest_value, fix):
        """Raises unless the whole dataset is used from a step before `total_steps`."""
        if self.total_steps is None or self.full_data_step < self.total_steps:
            return
        bound = f"at most {largest_value}" if largest_value is not None else "smaller"
        raise ValueError(
            f"`{argument}` must be {bound} so that the pacing reaches the whole dataset before "
            f"total_steps={self.total_steps}. Received: {argument}={value!r} (the whole dataset is used "
            f"from step {self.full_data_step} on). {fix}"
        )

    def get_config(self):
        """The constructor arguments (a dict), for `from_config`.

        Returns:
            A dict of the constructor arguments.

        Example:

        >>> keras_transfer.schedules.StepPacing(0.5, step_length=3).get_config()["step_length"]
        3
        """
        return {"starting_fraction": self.starting_fraction, "total_steps": self.total_steps, "name": self.name}

    @classmethod
    def from_config(cls, config):
        """A pacing function from `get_config()`'s dict.

        Args:
            config: the dict `get_config()` returned.

        Returns:
            A new instance of this class.

        Example:

        >>> pacing = keras_transfer.schedules.StepPacing(0.5, step_length=3)
        >>> keras_transfer.schedules.StepPacing.from_config(pacing.get_config()).step_length
        3
        """
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"
