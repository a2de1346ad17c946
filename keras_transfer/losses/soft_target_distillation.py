"""Soft-target distillation (Hinton et al., 2015): `T^2 * KL(softmax(t / T) || softmax(s / T))`."""

import keras
from keras import ops

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class SoftTargetDistillation(keras.distillation.DistillationLoss):
    """Hinton et al.'s soft-target loss, as a `keras.distillation` distillation loss.

    `T^2 * mean_batch(sum_classes p_t * (log p_t - log p_s))` with `p = softmax(logits / T)`,
    computed from log-softmaxes in float32 or wider (no probability clipping; finite
    under `mixed_float16`). The `T^2` factor keeps the gradient scale of the soft targets
    independent of `T`, so the weight between soft and hard targets need not be
    retuned when `T` changes.

    Keras's `LogitsDistillation` computes this only when its loss is a
    `keras.losses.KLDivergence` instance; its default `loss="kl_divergence"` and its
    own `from_config` give a plain function, and then it applies the KL divergence to
    the scaled logits themselves (not to their softmaxes). This class is that loss
    with no such switch.

    Args:
        temperature: the softmax temperature `T` (> 0); larger values soften both
            distributions.

    Raises:
        ValueError: if `temperature` is not a positive finite number.

    Reference:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015.

    Example:

    >>> loss = keras_transfer.losses.SoftTargetDistillation(temperature=2.0)
    >>> teacher = np.array([[2.0, 0.5, -1.0]], "float32")
    >>> student = np.array([[0.1, 0.3, 0.2]], "float32")
    >>> round(float(loss.compute_loss(teacher, student)), 4)
    0.7227
    >>> float(loss.compute_loss(teacher, teacher))
    0.0
    """

    def __init__(self, temperature=4.0):
        self.temperature = validation.check_positive_float(
            "temperature", temperature, "Typical values are 2 to 8; 1 is the plain softmax."
        )

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The soft-target loss between `(batch, classes)` teacher and student logits.

        Args:
            teacher_outputs: the teacher's logits.
            student_outputs: the student's logits.
            **kwargs: unused (Keras's `DistillationLoss` signature).

        Returns:
            A float32 scalar (float64 for float64 logits).
        """
        student_outputs = ops.convert_to_tensor(student_outputs)
        # float16/bfloat16 logits are promoted to float32; float64 ones stay float64.
        dtype = keras.backend.result_type(keras.backend.standardize_dtype(student_outputs.dtype), "float32")
        teacher = ops.cast(teacher_outputs, dtype) / self.temperature
        student = ops.cast(student_outputs, dtype) / self.temperature
        log_p_teacher = ops.log_softmax(teacher, axis=-1)
        log_p_student = ops.log_softmax(student, axis=-1)
        kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
        return ops.mean(kl) * (self.temperature**2)

    def get_config(self):
        """The constructor arguments.

        Returns:
            `{"temperature": T}`.
        """
        return {"temperature": self.temperature}

    @classmethod
    def from_config(cls, config):
        """Rebuilds the loss from `get_config()`'s output.

        Args:
            config: the dict `get_config()` returned.

        Returns:
            A `SoftTargetDistillation`.
        """
        return cls(**config)
