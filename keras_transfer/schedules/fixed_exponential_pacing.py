"""Hacohen & Weinshall's fixed exponential pacing: the available data grows by a factor every few steps."""

import math

import keras
from keras import ops

from keras_transfer.schedules.pacing_function import PacingFunction
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class FixedExponentialPacing(PacingFunction):
    """`g(i) = min(starting_fraction * increase ** floor(i / step_length), 1) * N`.

    A staircase: training samples from the easiest `starting_fraction` of the data for
    `step_length` steps, then from `increase` times as many, and so on until the
    whole dataset (Hacohen & Weinshall's "fixed exponential pacing"; their
    `starting_percent`, `inc` and `step_length`). The whole dataset is used from step
    `step_length * k` on, with `k` the smallest integer such that
    `starting_fraction * increase ** k >= 1`.

    Args:
        starting_fraction: the fraction of the sorted data available at step 0, in (0, 1].
        increase: the factor by which the available data grows every `step_length`
            steps, > 1 (unless `starting_fraction` is 1).
        step_length: the number of steps between two increases, a positive integer.
        total_steps: None, or the number of training steps: then the whole dataset must
            be reached before it.
        name: optional name.

    Raises:
        ValueError: if `starting_fraction` is outside (0, 1], `increase` is not > 1,
            `step_length` or `total_steps` is not a positive integer, or the whole
            dataset is not reached before `total_steps`.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2, fixed exponential pacing).

    Example:

    >>> pacing = keras_transfer.schedules.FixedExponentialPacing(
    ...     starting_fraction=0.1, increase=2.0, step_length=5, total_steps=40)
    >>> [round(float(pacing(step)), 2) for step in (0, 4, 5, 10, 15, 20)]
    [0.1, 0.1, 0.2, 0.4, 0.8, 1.0]
    >>> pacing.full_data_step, int(pacing.num_examples(7, 1000))
    (20, 200)
    """

    def __init__(self, starting_fraction=0.1, increase=2.0, step_length=100, total_steps=None, name=None):
        super().__init__(starting_fraction, total_steps=total_steps, name=name)
        self.increase = validation.check_positive_float("increase", increase)
        if self.starting_fraction < 1.0 and self.increase <= 1.0:
            raise ValueError(
                "`increase` must be a number > 1: with increase <= 1 the pacing never reaches the whole "
                f"dataset. Received: increase={increase!r}. Use e.g. increase=2 (double the data every "
                "`step_length` steps)."
            )
        self.step_length = validation.check_positive_int("step_length", step_length)
        self._increases = self._increases_to_full_data()
        largest = None
        if self.total_steps is not None and self._increases:
            largest = max((self.total_steps - 1) // self._increases, 1)
        self._check_reaches_full_data(
            "step_length",
            step_length,
            largest,
            "Lower `step_length`, raise `increase` or `starting_fraction`, or train for more `total_steps`.",
        )

    def _increases_to_full_data(self):
        """The smallest k >= 0 with starting_fraction * increase**k >= 1 (1e-12 slack for rounding)."""
        if self.starting_fraction >= 1.0:
            return 0
        k = max(math.ceil(math.log(1.0 / self.starting_fraction) / math.log(self.increase)) - 1, 0)
        while self.starting_fraction * self.increase**k < 1.0 - 1e-12:
            k += 1
        return k

    @property
    def full_data_step(self):
        """The first step at which the whole dataset is available: `step_length * k`."""
        return self.step_length * self._increases

    def fraction(self, step):
        """`starting_fraction * increase ** floor(step / step_length)`, before clipping at 1.

        Args:
            step: a step, or an array of steps (float64 tensor).

        Returns:
            A float64 tensor of the shape of `step`.
        """
        stage = ops.floor(ops.cast(step, "float64") / float(self.step_length))
        return self.starting_fraction * ops.power(ops.convert_to_tensor(self.increase, dtype="float64"), stage)

    def get_config(self):
        return {**super().get_config(), "increase": self.increase, "step_length": self.step_length}
