"""Hacohen & Weinshall's single-step pacing: the easiest examples for a while, then all of them."""

import keras
from keras import ops

from keras_transfer.schedules.pacing_function import PacingFunction


@keras.saving.register_keras_serializable(package="keras_transfer")
class StepPacing(PacingFunction):
    """`g(i) = starting_fraction * N` for `i < step_length`, then `N`.

    The simplest staircase (Hacohen & Weinshall's "single step pacing",
    `g(i) = starting_percent ** 1[i < step_length] * N`): training samples from the
    easiest `starting_fraction` of the data for `step_length` steps, then from all of it.

    Args:
        starting_fraction: the fraction of the sorted data available before
            `step_length`, in (0, 1].
        step_length: the step from which the whole dataset is used, a positive integer.
        total_steps: None, or the number of training steps: then `step_length` must be
            smaller.
        name: optional name.

    Raises:
        ValueError: if `starting_fraction` is outside (0, 1], `step_length` or
            `total_steps` is not a positive integer, or `step_length >= total_steps`.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2, single step pacing).

    Example:

    >>> pacing = keras_transfer.schedules.StepPacing(0.2, step_length=100, total_steps=500)
    >>> [float(pacing(step)) for step in (0, 99, 100, 499)]
    [0.2, 0.2, 1.0, 1.0]
    """

    def __init__(self, starting_fraction=0.1, step_length=100, total_steps=None, name=None):
        super().__init__(starting_fraction, total_steps=total_steps, name=name)
        self._set_full_data_steps("step_length", step_length)

    def fraction(self, step):
        """`starting_fraction` before `step_length`, 1 from it on.

        Args:
            step: a step, or an array of steps (float64 tensor).

        Returns:
            A float64 tensor of the shape of `step`.
        """
        step = ops.cast(step, "float64")
        return ops.where(
            step < float(self.step_length), ops.full_like(step, self.starting_fraction), ops.ones_like(step)
        )

    def get_config(self):
        return {**super().get_config(), "step_length": self.step_length}
