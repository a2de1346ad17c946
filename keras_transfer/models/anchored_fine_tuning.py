"""Fine-tuning held near the pre-trained weights: L2-SP and EWC, against forgetting the source task."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.utils import validation

METHODS = ("l2_sp", "ewc")


def anchored_and_head_variables(classifier, head):
    """`(anchored, head variables)`: the classifier's trainable variables outside / inside the `head` layer."""
    try:
        head_layer = classifier.get_layer(head)
    except ValueError as error:
        names = [layer.name for layer in classifier.layers]
        raise ValueError(
            f"`head` must name a layer of the classifier (its new head). Received: head={head!r}; layers: {names}"
        ) from error
    head_ids = {id(v) for v in head_layer.trainable_variables}
    anchored = [v for v in classifier.trainable_variables if id(v) not in head_ids]
    return anchored, [v for v in classifier.trainable_variables if id(v) in head_ids]


def _check_fisher(fisher, anchored):
    if fisher is None:
        raise ValueError(
            "`fisher` must be given for method='ewc' (one diagonal Fisher array per anchored variable, "
            "estimated on the source task). Received: fisher=None. Compute it with "
            "`keras_transfer.ops.diagonal_fisher(source_model, x_source, y_source, "
            "variables=keras_transfer.recipes.feature_extractor(source_model).trainable_variables)`."
        )
    fisher = [np.asarray(f, "float32") for f in fisher]
    expected = [tuple(v.shape) for v in anchored]
    got = [f.shape for f in fisher]
    if got != expected:
        raise ValueError(
            f"`fisher` must hold one array per anchored variable, with its shape: {expected}. Received: fisher "
            f"with shapes {got}. Estimate it for the same variables (the classifier's trainable variables "
            "outside `head`, in order)."
        )
    if any(not np.all(np.isfinite(f)) or np.any(f < 0) for f in fisher):
        raise ValueError("`fisher` must be finite and non-negative. Received: a fisher with negative or NaN entries.")
    return fisher


@keras.saving.register_keras_serializable(package="keras_transfer")
class AnchoredFineTuning(ExportsDeclaredInputs, TrainStepModel):
    """Fine-tunes a classifier with a penalty that keeps it near its pre-trained weights.

    The classifier (e.g. `replace_head(source_model, k)`: the source backbone with a
    new head) is trained with the loss given to `compile` plus a penalty on the
    *anchored* variables, its trainable variables outside the `head` layer, measured
    from their values `w0` when the model is built (the pre-trained weights):

    - `method="l2_sp"` (Li et al. 2018): `alpha/2 ||w - w0||^2 + beta/2 ||w_head||^2`;
    - `method="ewc"` (Kirkpatrick et al. 2017): `alpha/2 sum_i F_i (w_i - w0_i)^2 +
      beta/2 ||w_head||^2`, with `F` the diagonal Fisher of the source task
      (`keras_transfer.ops.diagonal_fisher`).

    The penalty is a sum over weights (not a mean) added to the batch-mean loss, as in
    the papers; it is logged as `penalty` (and included in `loss`). `w0` and `F` are
    non-trainable variables of the model, so a `.keras` file keeps them and a resumed
    run continues exactly. `call` / `predict` / `export()` give the classifier's
    outputs; keep `model.classifier` for inference. Compile as the classifier would be:
    `model.compile(optimizer, loss, metrics)`. Distillation instead of a weight penalty:
    `keras_transfer.models.LearningWithoutForgetting`.

    Args:
        classifier: a built `keras.Model` classifier holding the pre-trained weights.
        method: "l2_sp" or "ewc".
        alpha: strength of the anchor term (EWC's lambda), >= 0. EWC's Fisher of a
            well-trained source model is small, so its `alpha` is usually far larger.
        beta: strength of the L2 term on the head's variables, >= 0.
        fisher: for "ewc", one array per anchored variable (in the order of
            `anchored_variables`); ignored by "l2_sp".
        head: name of the layer whose variables are the new head (not anchored).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: the classifier's inputs.
        training: whether the classifier runs in training mode.

    Raises:
        ValueError: if `method` is unknown, a strength is negative or not finite,
            `head` names no layer, or for "ewc" `fisher` is missing, has shapes other
            than the anchored variables' or negative entries.

    Reference:
        Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
        Convolutional Networks", ICML 2018; Kirkpatrick et al., "Overcoming
        catastrophic forgetting in neural networks", PNAS 2017.

    Example:

    >>> classifier = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="features"),
    ...                                keras.layers.Dense(3, name="head")])
    >>> model = keras_transfer.models.AnchoredFineTuning(classifier, "l2_sp", alpha=1.0, beta=0.0)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> [tuple(v.shape) for v in model.anchored_variables]
    [(2, 2), (2,)]
    >>> float(model.penalty())  # at the anchor
    0.0
    >>> _ = model.anchored_variables[1].assign([3.0, 4.0])
    >>> float(model.penalty())  # 1/2 * (9 + 16)
    12.5
    """

    keras_object_args = ("classifier",)

    def __init__(self, classifier, method="l2_sp", alpha=0.1, beta=0.01, fisher=None, head="head", **kwargs):
        super().__init__(**kwargs)
        self.method = validation.check_one_of("method", method, METHODS)
        self.alpha = validation.check_non_negative_float("alpha", alpha)
        self.beta = validation.check_non_negative_float("beta", beta)
        if not isinstance(classifier, keras.Model) or not classifier.built:
            raise ValueError(f"`classifier` must be a built keras.Model. Received: classifier={classifier!r}")
        self.classifier = classifier
        self.head = head
        anchored, _ = anchored_and_head_variables(classifier, head)
        if self.method == "ewc":
            fisher = _check_fisher(fisher, anchored)
        self.anchors = [self._constant(f"anchor_{i}", v.numpy()) for i, v in enumerate(anchored)]
        self.fisher = [self._constant(f"fisher_{i}", f) for i, f in enumerate(fisher)] if self.method == "ewc" else []
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.built = True

    @property
    def anchored_variables(self):
        """The classifier's trainable variables outside the head, in the order of the anchors."""
        anchored, _ = anchored_and_head_variables(self.classifier, self.head)
        if [tuple(v.shape) for v in anchored] != [tuple(a.shape) for a in self.anchors]:
            raise ValueError(
                "The classifier's trainable variables must stay those the model was built with (the anchored "
                f"ones). Received: {len(anchored)} trainable variables outside the head for {len(self.anchors)} "
                "anchors. Change what is trainable before building AnchoredFineTuning."
            )
        return anchored

    @property
    def head_variables(self):
        """The trainable variables of the `head` layer (the L2 term of `beta`)."""
        return anchored_and_head_variables(self.classifier, self.head)[1]

    def _constant(self, name, value):
        value = np.asarray(value, "float32")
        return self.add_weight(
            shape=value.shape,
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            trainable=False,
            name=name,
        )

    def call(self, inputs, training=False):
        return float32_outputs(self.classifier(inputs, training=training))

    def serving_input_signature(self):
        """`export()`'s input: the classifier's declared inputs.

        Returns:
            A list with one `keras.InputSpec` per classifier input (a dict of them for
            named inputs).
        """
        try:
            inputs = self.classifier.input
        except AttributeError:  # a Sequential model built from an input shape has no `input` tensor
            inputs = self.classifier.inputs
        if isinstance(inputs, dict):
            return [{name: input_spec_like(t) for name, t in inputs.items()}]
        return [input_spec_like(t) for t in self.classifier.inputs]

    def penalty(self, values=None):
        """The penalty at the current weights, or at `values`.

        Args:
            values: None, or one tensor per variable of `anchored_variables +
                head_variables` (to differentiate the penalty as a function).

        Returns:
            A float32 scalar tensor.
        """
        if values is None:
            values = [v.value for v in self.anchored_variables + self.head_variables]
        values = [ops.cast(v, "float32") for v in values]
        anchored, head = values[: len(self.anchors)], values[len(self.anchors) :]
        total = ops.zeros((), "float32")
        for i, (w, w0) in enumerate(zip(anchored, self.anchors)):
            squared = ops.square(w - w0.value)
            if self.method == "ewc":
                squared = squared * self.fisher[i].value
            total = total + 0.5 * self.alpha * ops.sum(squared)
        for w in head:
            total = total + 0.5 * self.beta * ops.sum(ops.square(w))
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus the penalty (logged as `penalty`)."""
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        penalty = self.penalty()
        self.penalty_tracker.update_state(penalty)
        # Keras scales the compiled loss per replica; the penalty is one value for the global batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss + ops.cast(penalty / replicas, loss.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"method": self.method, "alpha": self.alpha, "beta": self.beta, "head": self.head})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        if config.get("method") == "ewc" and config.get("fisher") is None:
            # Placeholders: the stored Fisher variables are loaded over them with the weights.
            anchored, _ = anchored_and_head_variables(config["classifier"], config.get("head", "head"))
            config["fisher"] = [np.zeros(v.shape, "float32") for v in anchored]
        return super().from_config(config)
