"""`keras.distillation.Distiller` that reloads from `.keras` compiled and with a default hard-label loss."""

import keras

from keras_transfer.models._serving import float32_outputs


@keras.saving.register_keras_serializable(package="keras_transfer")
class KnowledgeDistiller(keras.distillation.Distiller):
    """Keras's `Distiller` (teacher frozen, student trained) with a `.keras` round trip that can `fit`.

    The training objective, `call` (the student's outputs) and the teacher freezing
    are Keras's: `loss = student_loss_weight * hard_loss(y, student(x)) +
    (1 - student_loss_weight) * sum_i weight_i * distillation_loss_i`, the hard-label
    term left out when `fit` gets no `y`. Five additions:

    - `fit(x)` without labels also works when `compile` was given metrics (they are
      left out of the logs of unlabelled batches; Keras's `Distiller` fails there);
    - `compile()` defaults `loss` to `SparseCategoricalCrossentropy(from_logits=True)`
      (Keras's `Distiller.compile` requires it even when no labels are given);
    - `get_compile_config` / `compile_from_config` save and restore that loss, so a
      reloaded distiller is compiled and can go on training. Keras's `Distiller`
      reloads uncompiled and its `fit` then fails on the missing student loss;
    - the projections of `ProjectedFeatureDistillation` losses (features of different
      widths) are tracked (`feature_projections`): trained with the student and saved;
    - under a mixed-precision policy, `call` / `predict` / `export()` return float32.

    Build one with `keras_transfer.recipes.distill`. Keras's `Distiller` ignores
    `sample_weight`.

    Args:
        teacher: the trained `keras.Model`; set to `trainable=False`.
        student: the `keras.Model` to train; after `fit`, `distiller.student` is it.
        distillation_losses: a `keras.distillation.DistillationLoss` or a list of them.
        distillation_loss_weights: one weight per distillation loss (default 1.0 each).
        student_loss_weight: weight of the hard-label loss, in [0, 1].
        name: the model's name.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: the student's inputs.
        training: passed to the student.

    Returns:
        The student's outputs, when called.

    Raises:
        ValueError: as `keras.distillation.Distiller`.

    Reference:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015.

    Example:

    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = keras_transfer.models.KnowledgeDistiller(
    ...     teacher, student, keras_transfer.losses.SoftTargetDistillation(2.0))
    >>> distiller.compile(optimizer="adam")
    >>> distiller.get_compile_config()["loss"]["class_name"]
    'SparseCategoricalCrossentropy'
    >>> tuple(distiller(np.zeros((2, 4), "float32")).shape), teacher.trainable
    ((2, 3), False)
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses,
        distillation_loss_weights=None,
        student_loss_weight=0.5,
        name="distiller",
        **kwargs,
    ):
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=distillation_losses,
            distillation_loss_weights=distillation_loss_weights,
            student_loss_weight=student_loss_weight,
            name=name,
            **kwargs,
        )
        # Learned feature projections (ProjectedFeatureDistillation) train with the student and are saved.
        self.feature_projections = [loss.projection for loss in self.distillation_losses if hasattr(loss, "projection")]

    def call(self, inputs, training=None, **kwargs):
        """The student's outputs, half-precision ones (mixed precision) cast to float32."""
        return float32_outputs(super().call(inputs, training=training, **kwargs))

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Keras's `Distiller.compile`; `loss=None` is sparse categorical cross-entropy on logits."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self._hard_label_loss = loss
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras's metrics; on unlabelled batches (`y` None) the losses only, the compiled metrics need labels."""
        if y is not None:
            return super().compute_metrics(x, y, y_pred, sample_weight)
        trackers = (self.student_loss_tracker, self.distillation_loss_tracker, self.total_loss_tracker)
        return {"loss": self.total_loss_tracker.result(), **{t.name: t.result() for t in trackers}}

    def get_metrics_result(self):
        """Keras's `{name: value}` of `self.metrics`, less compiled metrics not built (no labelled batch yet)."""
        results = {}
        for metric in self.metrics:
            if getattr(metric, "built", True):  # Mean trackers have no `built`
                result = metric.result()
                results.update(result if isinstance(result, dict) else {metric.name: result})
        return results

    def get_compile_config(self):
        """Keras's compile config with the hard-label loss (Keras's `Distiller` stores `loss=None`)."""
        config = super().get_compile_config()
        if config:
            config["loss"] = keras.saving.serialize_keras_object(self._hard_label_loss)
        return config

    def compile_from_config(self, config):
        """Compiles from `get_compile_config()` and builds the optimizer, so its saved state loads."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)
