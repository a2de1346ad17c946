"""Private base of the domain-adaptation models (`SourceOnly`, `DANN`, `DeepCORAL`).

The batch structure they share is described in `keras_transfer.models.source_only`.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._finite_logs import weights_finite
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel


def _nest_concat(a, b):
    return tf.nest.map_structure(lambda u, v: ops.concatenate([u, v], axis=0), a, b)


def _first(x):
    return tf.nest.flatten(x)[0]


def _rows(x):
    return ops.shape(_first(x))[0]


def nan_unless_finite(correct, scores):
    """`correct` (one value per example) where the example's `scores` are finite, else NaN.

    An accuracy computed from NaN scores would read as a plausible number (argmax of
    NaN is 0) while the model is broken: NaN keeps `TerminateOnNaN`-style checks honest.
    """
    finite = ops.isfinite(ops.cast(scores, "float32"))
    if len(finite.shape) > len(correct.shape):
        finite = ops.all(finite, axis=-1)
    return ops.where(finite, correct, ops.full_like(correct, float("nan")))


class _Unpacked:
    __slots__ = ("source_x", "target_x", "source_y", "sample_weight")

    def __init__(self, source_x, target_x, source_y, sample_weight):
        self.source_x, self.target_x = source_x, target_x
        self.source_y, self.sample_weight = source_y, sample_weight


class DomainAdaptationModel(ExportsDeclaredInputs, TrainStepModel):
    """`label_classifier(feature_extractor(x))` trained on domain-adaptation batches.

    The base of `SourceOnly`, `DANN` and `DeepCORAL`: batches
    `((source_x, target_x), source_y)` (see `keras_transfer.models.source_only`),
    the label loss and metrics, the training and evaluation steps, building and
    export. A subclass creates its adaptation branch after `super().__init__`,
    ends its `__init__` with `self._build_from_feature_extractor()`, and overrides
    the hooks `_build_adaptation`, `_adaptation_trackers` and `_adaptation`.
    Compile with an optimizer only: `model.compile(optimizer="adam")`.
    """

    # Whether this model needs target batches (DANN, DeepCORAL) or ignores them.
    _uses_target = True
    keras_object_args = ("feature_extractor", "label_classifier")

    def __init__(self, feature_extractor, label_classifier, from_logits=True, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("feature_extractor", feature_extractor), ("label_classifier", label_classifier)):
            if not isinstance(value, keras.layers.Layer):
                raise ValueError(f"`{name}` must be a Keras layer or model. Received: {name}={value!r}")
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be True or False. Received: from_logits={from_logits!r}")
        self.feature_extractor = feature_extractor
        self.label_classifier = label_classifier
        self.from_logits = from_logits
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.label_loss_tracker = keras.metrics.Mean(name="label_loss")
        self.label_accuracy_tracker = keras.metrics.Mean(name="label_accuracy")

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` without `loss` / `metrics`: the label loss and metrics are built in."""
        for name, value in (("loss", loss), ("metrics", metrics)):
            if value:
                raise ValueError(
                    f"`{name}` must be None for `{type(self).__name__}`: the label cross-entropy, "
                    "`label_accuracy` and the adaptation losses are built in (`from_logits` "
                    f"chooses logits or probabilities). Received: {name}={value!r}. Compile with "
                    "an optimizer only."
                )
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # ----------------------------------------------------------------- build
    def _build_from_feature_extractor(self):
        """Builds every sub-model now when the feature extractor knows its input shape."""
        try:
            shape = self.feature_extractor.input_shape
        except (AttributeError, ValueError):
            return
        if isinstance(shape, tuple) and all(isinstance(d, (int, type(None))) for d in shape):
            self.build(shape)

    def _declared_inputs(self):
        """The feature extractor's `keras.Input` tensors (their structure), or None."""
        if not isinstance(self.feature_extractor, keras.Model):
            return None
        try:
            inputs = list(self.feature_extractor.inputs or [])
        except (AttributeError, ValueError):
            return None
        if len(inputs) == 1:  # a Sequential's `input` is that of its first call, not its Input
            return inputs[0]
        if not inputs:
            return None
        try:  # a Functional's first node holds the structure of its inputs (dict, list)
            return self.feature_extractor.input
        except (AttributeError, ValueError):
            return inputs

    def build(self, input_shape):
        declared = self._declared_inputs()
        dtype = None if keras.tree.is_nested(declared) else getattr(declared, "dtype", None)
        inputs = keras.tree.map_shape_structure(lambda shape: keras.KerasTensor(tuple(shape), dtype=dtype), input_shape)
        features = self.feature_extractor(inputs)
        self.label_classifier(features)
        self._build_adaptation(features)
        self._serving_input_shape = input_shape
        self.built = True

    def _build_from_batch(self, x):
        """Builds the model (once, at trace time) from a batch of inputs when nothing built it.

        A feature extractor without a known input shape leaves the model unbuilt until a
        batch arrives: `fit` calls only the sub-models, so without this the model could
        not be exported or saved with its input shape after training.
        """
        if not self.built:
            self.build(tf.nest.map_structure(lambda t: (None,) + tuple(t.shape[1:]), x))

    # ---------------------------------------------------------------- export
    def serving_input_signature(self):
        """The serving input of `export()`: `[spec]` for `call(inputs)`.

        The feature extractor's declared `keras.Input` (shape and dtype) when it has one,
        otherwise a float32 input of the feature shape this model was built with.
        """
        declared = self._declared_inputs()
        if declared is not None:
            return [tf.nest.map_structure(input_spec_like, declared)]
        shape = getattr(self, "_serving_input_shape", None)
        if shape is None:
            raise ValueError(
                f"`{type(self).__name__}` must be built before `export()`: its feature extractor "
                "declares no input shape. Received: an unbuilt model. Train it with `fit`, call "
                "`predict` on a batch, or call `model.build(input_shape)` first."
            )
        return [
            keras.tree.map_shape_structure(
                lambda s: keras.InputSpec(shape=(None,) + tuple(s)[1:], dtype="float32"), shape
            )
        ]

    def _build_adaptation(self, features):
        """Builds the adaptation branch on symbolic `features` (subclasses)."""

    # -------------------------------------------------------------- inference
    def call(self, inputs, training=None):
        """Class scores of `inputs`; float32 under a mixed-precision policy."""
        scores = self.label_classifier(self.feature_extractor(inputs, training=training), training=training)
        return float32_outputs(scores)

    # ---------------------------------------------------------------- metrics
    @property
    def metrics(self):
        return [self.loss_tracker, self.label_loss_tracker, self.label_accuracy_tracker] + list(
            self._adaptation_trackers()
        )

    def _adaptation_trackers(self):
        return []

    # ------------------------------------------------------------- unpacking
    def _unpack(self, data, for_training):
        """Splits a batch into source/target inputs, source labels and weights (see module doc)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError(
                f"`{type(self).__name__}` trains on labelled source batches "
                "`((source_x, target_x), source_y)`. Received: a batch without labels. "
                "Use `keras_transfer.datasets.domain_pairs(source_x, source_y, target_x)`."
            )
        if isinstance(y, (tuple, list)):
            raise ValueError(
                "`y` must hold the source labels only: the target domain is unlabelled in "
                f"domain adaptation. Received: y with {len(y)} parts (target labels?). "
                "Pass `((source_x, target_x), source_y)`; evaluate on labelled target data "
                "separately with `model.evaluate(target_x, target_y)`."
            )
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError(
                    "`x` must be the pair `(source_x, target_x)`. Received: x with "
                    f"{len(x)} parts. Target labels are not allowed in domain adaptation; "
                    "pass `((source_x, target_x), source_y)`."
                )
            source_x, target_x = x
            self._check_pair(source_x, target_x)
            return _Unpacked(source_x, target_x, y, sample_weight)
        if for_training and self._uses_target:
            raise ValueError(
                f"`{type(self).__name__}` must be trained on `((source_x, target_x), source_y)` "
                "batches: the unlabelled target batch drives the adaptation. Received: a plain "
                "`(x, y)` batch. Use `keras_transfer.datasets.domain_pairs(source_x, source_y, "
                "target_x)`."
            )
        return _Unpacked(x, None, y, sample_weight)

    @staticmethod
    def _check_pair(source_x, target_x):
        source_shapes = [tuple(t.shape) for t in tf.nest.flatten(source_x)]
        target_shapes = [tuple(t.shape) for t in tf.nest.flatten(target_x)]
        if len(source_shapes) != len(target_shapes) or any(
            len(s) != len(t) or any(a is not None and b is not None and a != b for a, b in zip(s[1:], t[1:]))
            for s, t in zip(source_shapes, target_shapes)
        ):

            def show(shapes):
                features = [s[1:] for s in shapes]
                return features[0] if len(features) == 1 else features

            raise ValueError(
                "`source_x` and `target_x` must have the same feature shape (batch sizes may "
                f"differ). Received: source_x with feature shape {show(source_shapes)} and "
                f"target_x with feature shape {show(target_shapes)}. Resize or map the target "
                "inputs to the source input space first."
            )
        rows = target_shapes[0][0] if target_shapes and target_shapes[0] else None
        if rows == 0:
            raise ValueError("`target_x` must hold at least one example per batch. Received: an empty target batch.")

    # ------------------------------------------------------------------ loss
    def _label_loss_and_correct(self, y, scores):
        """Per-example float32 cross-entropy and 0/1 correctness for sparse, one-hot or binary labels."""
        scores = ops.cast(scores, "float32")
        classes = scores.shape[-1]
        if classes == 1:
            y = ops.reshape(ops.cast(y, "float32"), ops.shape(scores))
            losses = keras.losses.binary_crossentropy(y, scores, from_logits=self.from_logits)
            threshold = 0.0 if self.from_logits else 0.5
            predicted = ops.cast(scores > threshold, "float32")
            correct = ops.mean(ops.cast(ops.equal(predicted, y), "float32"), axis=-1)
            return losses, nan_unless_finite(correct, scores)
        if len(y.shape) == len(scores.shape) and y.shape[-1] == classes:
            losses = keras.losses.categorical_crossentropy(y, scores, from_logits=self.from_logits)
            truth = ops.argmax(y, axis=-1)
        else:
            if len(y.shape) == len(scores.shape):
                y = ops.squeeze(y, axis=-1)
            losses = keras.losses.sparse_categorical_crossentropy(y, scores, from_logits=self.from_logits)
            truth = y
        correct = ops.cast(ops.equal(ops.argmax(scores, axis=-1), ops.cast(truth, "int64")), "float32")
        return losses, nan_unless_finite(correct, scores)

    @staticmethod
    def _weighted_mean(values, sample_weight):
        if sample_weight is None:
            return ops.mean(values)
        sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(values))
        return ops.sum(values * sample_weight) / ops.cast(ops.shape(values)[0], "float32")

    def _adaptation(self, source_features, target_features, source_scores, training):
        """Returns `(loss, logs)` of the adaptation objective (subclasses); here none.

        `logs` maps tracker names to `(values, sample_weight)` for `update_state`.
        """
        return None, {}

    def _forward(self, batch, training):
        """Label scores of the source batch plus the adaptation loss and its logs."""
        if self._uses_target and batch.target_x is not None:
            n_source = _rows(batch.source_x)
            features = self.feature_extractor(_nest_concat(batch.source_x, batch.target_x), training=training)
            source_features = features[:n_source]
            target_features = features[n_source:]
            scores = self.label_classifier(source_features, training=training)
            adaptation_loss, logs = self._adaptation(source_features, target_features, scores, training)
            return scores, adaptation_loss, logs
        source_features = self.feature_extractor(batch.source_x, training=training)
        scores = self.label_classifier(source_features, training=training)
        return scores, None, {}

    # ----------------------------------------------------------------- steps
    def train_step(self, data):
        batch = self._unpack(data, for_training=True)
        self._build_from_batch(batch.source_x)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            scores, adaptation_loss, adaptation_logs = self._forward(batch, training=True)
            losses, correct = self._label_loss_and_correct(batch.source_y, scores)
            label_loss = self._weighted_mean(losses, batch.sample_weight)
            loss = label_loss
            if adaptation_loss is not None:
                loss = loss + adaptation_loss
            if self.losses:
                loss = loss + ops.cast(ops.sum(self.losses), "float32")
            scaled = loss / replicas
            if hasattr(self.optimizer, "scale_loss"):
                scaled = self.optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self._update_trackers(batch, loss, label_loss, correct, adaptation_logs)

    def test_step(self, data):
        batch = self._unpack(data, for_training=False)
        self._build_from_batch(batch.source_x)
        scores, adaptation_loss, adaptation_logs = self._forward(batch, training=False)
        losses, correct = self._label_loss_and_correct(batch.source_y, scores)
        label_loss = self._weighted_mean(losses, batch.sample_weight)
        loss = label_loss if adaptation_loss is None else label_loss + adaptation_loss
        return self._update_trackers(batch, loss, label_loss, correct, adaptation_logs)

    def _update_trackers(self, batch, loss, label_loss, correct, adaptation_logs):
        # NaN logs unless the batch's inputs and the (updated) weights are finite: NaN does
        # not always reach the outputs (oneDNN's fused MatMul+ReLU maps NaN to 0 on some CPUs).
        inputs = [t for t in tf.nest.flatten((batch.source_x, batch.target_x)) if t is not None]
        finite = ops.logical_and(all_finite(inputs), weights_finite(self))
        sample_weight = batch.sample_weight
        self.loss_tracker.update_state(nan_unless(finite, loss))
        self.label_loss_tracker.update_state(nan_unless(finite, label_loss))
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(correct))
        self.label_accuracy_tracker.update_state(nan_unless(finite, correct), sample_weight=sample_weight)
        trackers = [self.loss_tracker, self.label_loss_tracker, self.label_accuracy_tracker]
        for tracker in self._adaptation_trackers():
            if tracker.name in adaptation_logs:
                value, weight = adaptation_logs[tracker.name]
                tracker.update_state(nan_unless(finite, value), sample_weight=weight)
                trackers.append(tracker)
        return {tracker.name: tracker.result() for tracker in trackers}

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config
