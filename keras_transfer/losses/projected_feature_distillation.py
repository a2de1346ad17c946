"""FitNets hints between features of different widths: a learned linear map of the student's features."""

import keras

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class ProjectedFeatureDistillation(keras.distillation.FeatureDistillation):
    """Keras's `FeatureDistillation` through a learned projection of the student's features.

    `loss(f_t, f_s W + b)`: the student's features `f_s` (last axis `student_width`) are
    mapped by a `Dense(teacher_width)` regressor to the teacher's width before the
    loss (FitNets' regressor; on `(batch, height, width, channels)` feature maps the
    `Dense` is a 1x1 convolution). The projection is trained with the student by the
    distiller (`KnowledgeDistiller` tracks it) and is not part of the student, which
    stays a plain model for serving. It computes in float32 (teacher features and the
    loss too), so it is finite under `mixed_float16`.

    Keras's `FeatureDistillation` needs features of the same shape; students are usually
    narrower than their teachers, and this loss is that case.

    Args:
        loss: a Keras loss name or function for the features (default mean squared error).
        teacher_layer_name: the teacher's layer whose output is matched.
        student_layer_name: the student's layer whose output is projected.
        student_width: size of the last axis of the student's features (positive int).
        teacher_width: size of the last axis of the teacher's features (positive int).

    Raises:
        ValueError: if a width is not a positive integer.

    Reference:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    Example:

    >>> hint = keras_transfer.losses.ProjectedFeatureDistillation(
    ...     teacher_layer_name="t", student_layer_name="s", student_width=2, teacher_width=3)
    >>> hint.projection.set_weights([np.ones((2, 3), "float32"), np.zeros(3, "float32")])
    >>> student_features = np.array([[1.0, 2.0]], "float32")  # projected: [[3, 3, 3]]
    >>> float(hint.compute_loss(np.array([[3.0, 3.0, 5.0]], "float32"), student_features))  # (0 + 0 + 4) / 3
    1.3333333730697632
    """

    def __init__(self, loss="mse", teacher_layer_name=None, student_layer_name=None, student_width=1, teacher_width=1):
        super().__init__(loss=loss, teacher_layer_name=teacher_layer_name, student_layer_name=student_layer_name)
        self.student_width = validation.check_positive_int(
            "student_width", student_width, "Pass the size of the last axis of the student's features."
        )
        self.teacher_width = validation.check_positive_int(
            "teacher_width", teacher_width, "Pass the size of the last axis of the teacher's features."
        )
        # float32: the projected features and the loss stay finite under mixed_float16.
        self.projection = keras.layers.Dense(
            self.teacher_width, dtype="float32", name=f"projection_{student_layer_name}_to_{teacher_layer_name}"
        )
        self.projection.build((None, self.student_width))

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The feature loss between the teacher's features and the projected student's.

        Args:
            teacher_outputs: the teacher's features, last axis `teacher_width`.
            student_outputs: the student's features, last axis `student_width`.
            **kwargs: unused (Keras's `DistillationLoss` signature).

        Returns:
            A float32 scalar.
        """
        teacher = keras.ops.cast(teacher_outputs, "float32")
        return super().compute_loss(teacher, self.projection(student_outputs))

    def get_config(self):
        """Keras's `FeatureDistillation` config with the two widths.

        Returns:
            The constructor arguments.
        """
        return {**super().get_config(), "student_width": self.student_width, "teacher_width": self.teacher_width}
