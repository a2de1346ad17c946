"""Ganin et al.'s learning-rate annealing μ_p = μ0 / (1 + α p)^β as a Keras schedule."""

import keras
from keras import ops

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class InversePowerDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Ganin et al.'s annealing `lr = initial_learning_rate / (1 + alpha * p) ** beta`.

    With `p = min(step / decay_steps, 1)` the training progress from 0 to 1, this
    is the learning-rate schedule of domain-adversarial training (μ0 = 0.01,
    α = 10, β = 0.75 in the paper). Keras's `InverseTimeDecay` is the special case
    β = 1 without the clipping of `p`; this schedule is written by hand because
    Keras has no power variant.

    Args:
        initial_learning_rate: μ0, a positive number.
        decay_steps: the number of steps at which `p` reaches 1 (total training steps);
            after it the rate stays at `μ0 / (1 + α) ** β`.
        alpha: α, non-negative.
        beta: β, non-negative.
        name: optional name of the schedule.

    Raises:
        ValueError: if `initial_learning_rate` or `decay_steps` is not positive,
            or `alpha` or `beta` is negative.

    Reference:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR
        2016 (§5.2.2).

    Example:

    >>> schedule = keras_transfer.schedules.InversePowerDecay(0.01, decay_steps=100)
    >>> [round(float(schedule(step)), 5) for step in (0, 50, 100, 200)]
    [0.01, 0.00261, 0.00166, 0.00166]
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=10.0, beta=0.75, name=None):
        super().__init__()
        self.initial_learning_rate = validation.check_positive_float("initial_learning_rate", initial_learning_rate)
        self.decay_steps = validation.check_positive_int(
            "decay_steps", decay_steps, fix="Use the total number of training steps"
        )
        self.alpha = validation.check_non_negative_float("alpha", alpha)
        self.beta = validation.check_non_negative_float("beta", beta)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = ops.minimum(step / float(self.decay_steps), 1.0)
        return self.initial_learning_rate / ops.power(1.0 + self.alpha * progress, self.beta)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "beta": self.beta,
            "name": self.name,
        }
