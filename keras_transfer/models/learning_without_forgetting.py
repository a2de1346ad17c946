"""Learning without Forgetting (Li & Hoiem): fine-tuning that distils the old head's outputs."""

import keras
from keras import ops

from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.utils import validation


def soft_cross_entropy(recorded_logits, logits, temperature):
    """Li & Hoiem's modified cross-entropy: `-sum softmax(recorded / T) log softmax(logits / T)`, batch mean."""
    targets = ops.softmax(ops.cast(recorded_logits, "float32") / temperature, axis=-1)
    log_p = ops.log_softmax(ops.cast(logits, "float32") / temperature, axis=-1)
    return -ops.mean(ops.sum(targets * log_p, axis=-1))


def _logits_dense(old_head, name, trainable):
    config = old_head.get_config()
    config.update(name=name, activation=None, dtype="float32", trainable=trainable)
    return keras.layers.Dense.from_config(config)


@keras.saving.register_keras_serializable(package="keras_transfer")
class LearningWithoutForgetting(ExportsDeclaredInputs, TrainStepModel):
    """Trains a new head and the shared backbone while the old head keeps answering as it did.

    `classifier` is the source backbone with a new head (`replace_head(source, k)`);
    `old_head` the source model's `Dense` head. The model adds a trainable copy of the
    old head on the classifier's features (the input of its `head` layer) and a frozen
    copy of the whole source network (its backbone and old head as they were when the
    model was built). Each training step adds to the compiled loss of the new head
    `old_weight * L_old`, Li & Hoiem's distillation with temperature `T`:
    `L_old = -mean_n sum_c softmax(r_n / T)_c log softmax(o_n / T)_c`, where `r` are the
    frozen copy's logits on the batch (the recorded outputs of the old task, computed in
    inference mode, so they equal outputs recorded before training) and `o` the trained
    old head's logits. `L_old` is logged as `distillation` (and included in `loss`). A
    softmax of the old head is dropped: the distillation works on its logits.

    `call` / `predict` / `export()` give the classifier's (new head's) outputs;
    `old_logits(x)` the old task's logits. Compile as the classifier would be.

    Args:
        classifier: a built `keras.Model` with the source backbone and a new head.
        old_head: the source model's head, a built `keras.layers.Dense` whose input
            width is the classifier's feature width (e.g. `recipes.get_head(source)`).
        temperature: the distillation temperature T (> 0); Li & Hoiem use 2.
        old_weight: lambda_o, the weight of the old task's loss (>= 0).
        head: name of the classifier's new head layer.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: the classifier's inputs.
        training: whether the networks run in training mode (and the distillation is
            added to the model's losses).

    Raises:
        ValueError: if `classifier` is not a built model, `head` names no layer,
            `old_head` is not a `Dense` layer of the feature width, or a strength is
            negative (`temperature` not positive).

    Reference:
        Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2018.

    Example:

    >>> source = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, name="features"),
    ...                            keras.layers.Dense(3, activation="softmax", name="head")])
    >>> classifier = keras_transfer.recipes.replace_head(source, 2, activation=None)
    >>> model = keras_transfer.models.LearningWithoutForgetting(classifier, source.get_layer("head"))
    >>> model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x = np.ones((4, 2))
    >>> sorted(model.fit(x, np.array([0, 1, 0, 1]), verbose=0).history)
    ['distillation', 'loss']
    >>> np.allclose(keras.ops.softmax(model.old_logits(x)), source.predict(x, verbose=0), atol=1e-2)
    True
    """

    keras_object_args = ("classifier",)

    def __init__(self, classifier, old_head, temperature=2.0, old_weight=1.0, head="head", **kwargs):
        super().__init__(**kwargs)
        self.temperature = validation.check_positive_float("temperature", temperature)
        self.old_weight = validation.check_non_negative_float("old_weight", old_weight)
        if not isinstance(classifier, keras.Model) or not classifier.built:
            raise ValueError(f"`classifier` must be a built keras.Model. Received: classifier={classifier!r}")
        try:
            head_layer = classifier.get_layer(head)
        except ValueError as error:
            names = [layer.name for layer in classifier.layers]
            raise ValueError(
                f"`head` must name a layer of the classifier. Received: head={head!r}; layers: {names}"
            ) from error
        width = int(head_layer.input.shape[-1])
        if not isinstance(old_head, keras.layers.Dense) or (old_head.built and old_head.kernel.shape[0] != width):
            raise ValueError(
                f"`old_head` must be the source model's Dense head on {width} features (recipes.get_head(source)). "
                f"Received: old_head={old_head!r}"
            )
        self.classifier, self.head = classifier, head
        # The old head's config, not the layer: tracking the source's layer would add its variables to this model.
        self.old_head_config = old_head.get_config()
        inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs
        self.trained_old_head = _logits_dense(old_head, "old_head", trainable=True)
        self.two_heads = keras.Model(inputs, [classifier.output, self.trained_old_head(head_layer.input)])
        features = keras.models.clone_model(keras.Model(inputs, head_layer.input))
        features.set_weights([v.numpy() for v in keras.Model(inputs, head_layer.input).weights])
        recorded_head = _logits_dense(old_head, "recorded_old_head", trainable=False)
        self.recorded = keras.Model(features.inputs, recorded_head(features.output), name="recorded_source")
        self.recorded.trainable = False
        if old_head.built:
            self.trained_old_head.set_weights([old_head.kernel.numpy(), old_head.bias.numpy()])
            recorded_head.set_weights([old_head.kernel.numpy(), old_head.bias.numpy()])
        self.distillation_tracker = keras.metrics.Mean(name="distillation")
        self.built = True

    def call(self, inputs, training=False):
        new, old = self.two_heads(inputs, training=training)
        if training:
            recorded = ops.stop_gradient(self.recorded(inputs, training=False))
            distillation = soft_cross_entropy(recorded, old, self.temperature)
            self.distillation_tracker.update_state(distillation)
            self.add_loss(self.old_weight * distillation)
        return new

    def old_logits(self, inputs, training=False):
        """The trained old head's logits (the source task's classes).

        Args:
            inputs: the classifier's inputs.
            training: whether the networks run in training mode.

        Returns:
            Float32 logits `(batch, old classes)`.
        """
        return self.two_heads(inputs, training=training)[1]

    def serving_input_signature(self):
        """`export()`'s input: the classifier's declared inputs.

        Returns:
            A list with one `keras.InputSpec` per classifier input.
        """
        return [input_spec_like(t) for t in self.classifier.inputs]

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "old_weight": self.old_weight, "head": self.head})
        config["old_head"] = keras.saving.serialize_keras_object(keras.layers.Dense.from_config(self.old_head_config))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["old_head"] = keras.saving.deserialize_keras_object(config["old_head"])
        return super().from_config(config)
