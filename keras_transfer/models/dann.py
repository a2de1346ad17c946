"""Domain-Adversarial Neural Network (Ganin et al., JMLR 2016)."""

import keras
from keras import ops

from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.models._domain_adaptation import DomainAdaptationModel
from keras_transfer.models._domain_adaptation import nan_unless_finite
from keras_transfer.utils import validation


def _default_domain_classifier():
    return keras.Sequential(
        [keras.layers.Dense(100, activation="relu"), keras.layers.Dense(1)],
        name="domain_classifier",
    )


@keras.saving.register_keras_serializable(package="keras_transfer")
class DANN(DomainAdaptationModel):
    """Domain-adversarial training: features that classify the source and hide the domain.

    One training step on a batch `((source_x, target_x), source_y)` (see
    `keras_transfer.models.source_only` for the batch structure; build it with
    `keras_transfer.datasets.domain_pairs`):

    1. `features = feature_extractor(concat(source_x, target_x))` (one pass, so
       BatchNorm sees both domains);
    2. label loss: cross-entropy of `label_classifier(features_source)` against
       `source_y` (source only);
    3. domain loss: binary cross-entropy of
       `domain_classifier(GradientReversal(features))` against 0 (source) / 1 (target),
       averaged over the `n_s + n_t` examples of both domains;
    4. one optimizer step on `label_loss + domain_loss_weight * domain_loss`. The
       domain classifier minimises the domain loss; through the reversal layer the
       feature extractor receives `-factor` times its gradient, i.e. maximises it.
       (`domain_loss_weight=λ, factor=1` is the update of the paper's Algorithm 1,
       where λ also scales the domain classifier's step; `domain_loss_weight=1,
       factor=λ` is the gradient-reversal formulation of §5.2.)

    Metrics: `loss`, `label_loss`, `label_accuracy` (source), `domain_loss`,
    `domain_accuracy`. A domain accuracy near 0.5 means the features no longer tell
    the domains apart. `call()` is the label path, so `predict`, `evaluate(x, y)` and
    `export()` serve the adapted classifier. Drive `factor` with
    `keras_transfer.callbacks.GradientReversalSchedule` (Ganin's λ_p schedule).

    Args:
        feature_extractor: Keras model or layer, inputs to features.
        label_classifier: Keras model or layer, features to class scores.
        domain_classifier: Keras model or layer, features to one domain logit (or two
            logits, source and target). `None` uses an MLP `Dense(100, relu) -> Dense(1)`.
        factor: initial factor of the gradient reversal layer (non-negative).
        domain_loss_weight: weight of the domain loss in the total loss (non-negative).
        from_logits: whether `label_classifier` outputs logits (default) or probabilities.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of inputs of the feature extractor.
        training: whether the networks run in training mode.

    Raises:
        ValueError: if a network is not a Keras layer or model, `factor` or
            `domain_loss_weight` is negative, or the domain classifier does not output
            one (or two) logits per example.

    Reference:
        Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand &
        Lempitsky, "Domain-Adversarial Training of Neural Networks", JMLR 2016.

    Example:

    >>> feature_extractor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu")])
    >>> model = keras_transfer.models.DANN(feature_extractor, keras.layers.Dense(3),
    ...                                    domain_classifier=keras.layers.Dense(1))
    >>> model.compile(optimizer="sgd")
    >>> data = keras_transfer.datasets.domain_pairs(
    ...     np.zeros((4, 4)), np.zeros(4, "int32"), np.ones((4, 4)), batch_size=4)
    >>> history = model.fit(data, epochs=1, shuffle=False, verbose=0)
    >>> sorted(history.history)
    ['domain_accuracy', 'domain_loss', 'label_accuracy', 'label_loss', 'loss']
    >>> tuple(model.predict(np.zeros((2, 4)), verbose=0).shape)  # the label path
    (2, 3)
    """

    keras_object_args = DomainAdaptationModel.keras_object_args + ("domain_classifier",)

    def __init__(
        self,
        feature_extractor,
        label_classifier,
        domain_classifier=None,
        factor=1.0,
        domain_loss_weight=1.0,
        from_logits=True,
        **kwargs,
    ):
        super().__init__(feature_extractor, label_classifier, from_logits=from_logits, **kwargs)
        self.domain_loss_weight = validation.check_non_negative_float("domain_loss_weight", domain_loss_weight)
        if domain_classifier is None:
            domain_classifier = _default_domain_classifier()
        elif not isinstance(domain_classifier, keras.layers.Layer):
            raise ValueError(
                "`domain_classifier` must be a Keras layer or model mapping features to a domain "
                f"logit, or None for the default MLP. Received: domain_classifier={domain_classifier!r}"
            )
        self.domain_classifier = domain_classifier
        self.gradient_reversal = GradientReversal(factor, name="gradient_reversal")
        self.domain_loss_tracker = keras.metrics.Mean(name="domain_loss")
        self.domain_accuracy_tracker = keras.metrics.Mean(name="domain_accuracy")
        self._build_from_feature_extractor()

    def _build_adaptation(self, features):
        logits = self.domain_classifier(self.gradient_reversal(features))
        units = logits.shape[-1]
        if len(logits.shape) != 2 or units not in (1, 2):
            raise ValueError(
                "`domain_classifier` must output one logit per example, shape (batch, 1) (or two "
                f"logits, source and target). Received: a domain_classifier with output shape "
                f"{tuple(logits.shape)}. End it with `keras.layers.Dense(1)`."
            )

    @property
    def factor(self):
        """The current factor of the gradient reversal layer."""
        return self.gradient_reversal.factor

    @factor.setter
    def factor(self, value):
        self.gradient_reversal.factor = value

    def _adaptation_trackers(self):
        return [self.domain_loss_tracker, self.domain_accuracy_tracker]

    def domain_logits(self, x, training=False):
        """Domain logits of inputs `x` (without gradient reversal).

        Args:
            x: a batch of inputs of the feature extractor.
            training: whether the networks run in training mode.

        Returns:
            The domain classifier's logits (positive: target), float32 under mixed
            precision.
        """
        features = self.feature_extractor(x, training=training)
        logits = self.domain_classifier(features, training=training)
        if keras.backend.standardize_dtype(logits.dtype) in ("float16", "bfloat16"):
            logits = ops.cast(logits, "float32")
        return logits

    def _adaptation(self, source_features, target_features, source_scores, training):
        features = ops.concatenate([source_features, target_features], axis=0)
        logits = ops.cast(self.domain_classifier(self.gradient_reversal(features), training=training), "float32")
        n_source = ops.shape(source_features)[0]
        n_target = ops.shape(target_features)[0]
        domain = ops.concatenate([ops.zeros((n_source,), "int32"), ops.ones((n_target,), "int32")], axis=0)
        if logits.shape[-1] == 1:
            logits = ops.squeeze(logits, axis=-1)
            labels = ops.cast(domain, "float32")
            losses = keras.losses.binary_crossentropy(labels[:, None], logits[:, None], from_logits=True)
            correct = ops.cast(ops.equal(ops.cast(logits > 0, "int32"), domain), "float32")
        else:
            losses = keras.losses.sparse_categorical_crossentropy(domain, logits, from_logits=True)
            correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), domain), "float32")
        correct = nan_unless_finite(correct, logits)
        domain_loss = ops.mean(losses)
        logs = {"domain_loss": (domain_loss, None), "domain_accuracy": (correct, None)}
        return self.domain_loss_weight * domain_loss, logs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "factor": self.factor,
                "domain_loss_weight": self.domain_loss_weight,
            }
        )
        return config
