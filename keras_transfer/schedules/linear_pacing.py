"""Linear pacing: the available data grows linearly from a starting fraction to the whole dataset."""

import keras
from keras import ops

from keras_transfer.schedules.pacing_function import PacingFunction


@keras.saving.register_keras_serializable(package="keras_transfer")
class LinearPacing(PacingFunction):
    """`g(i) = min(starting_fraction + (1 - starting_fraction) * i / ramp_steps, 1) * N`.

    The available share of the sorted data rises linearly from `starting_fraction` at
    step 0 to the whole dataset at step `ramp_steps` (Platanios et al.'s linear
    competence; the linear pacing of Wu et al.): a pacing function in Hacohen &
    Weinshall's sense without their staircase.

    Args:
        starting_fraction: the fraction of the sorted data available at step 0, in (0, 1].
        ramp_steps: the step from which the whole dataset is used, a positive integer.
        total_steps: None, or the number of training steps: then `ramp_steps` must be
            smaller.
        name: optional name.

    Raises:
        ValueError: if `starting_fraction` is outside (0, 1], `ramp_steps` or
            `total_steps` is not a positive integer, or `ramp_steps >= total_steps`.

    Reference:
        Platanios et al., "Competence-based Curriculum Learning for Neural Machine
        Translation", NAACL 2019 (linear competence); Wu, Dyer & Neyshabur, "When Do
        Curricula Work?", ICLR 2021; Hacohen & Weinshall, "On the Power of Curriculum
        Learning in Training Deep Networks", ICML 2019 (§2, pacing functions).

    Example:

    >>> pacing = keras_transfer.schedules.LinearPacing(0.2, ramp_steps=100)
    >>> [round(float(pacing(step)), 2) for step in (0, 50, 100, 150)]
    [0.2, 0.6, 1.0, 1.0]
    """

    def __init__(self, starting_fraction=0.1, ramp_steps=1000, total_steps=None, name=None):
        super().__init__(starting_fraction, total_steps=total_steps, name=name)
        self._set_full_data_steps("ramp_steps", ramp_steps)

    def fraction(self, step):
        """`starting_fraction + (1 - starting_fraction) * step / ramp_steps`, before clipping at 1.

        Args:
            step: a step, or an array of steps (float64 tensor).

        Returns:
            A float64 tensor of the shape of `step`.
        """
        step = ops.cast(step, "float64")
        return self.starting_fraction + (1.0 - self.starting_fraction) * step / float(self.ramp_steps)

    def get_config(self):
        return {**super().get_config(), "ramp_steps": self.ramp_steps}
