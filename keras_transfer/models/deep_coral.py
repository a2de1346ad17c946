"""Deep CORAL (Sun & Saenko, 2016): align second-order statistics of source and target."""

import keras

from keras_transfer.losses.coral import coral_loss
from keras_transfer.models._domain_adaptation import DomainAdaptationModel
from keras_transfer.utils import distributed
from keras_transfer.utils import validation

_LAYERS = ("features", "logits")


@keras.saving.register_keras_serializable(package="keras_transfer")
class DeepCORAL(DomainAdaptationModel):
    """Source cross-entropy plus `coral_weight * CORAL(source, target)` on one representation.

    Trains on `((source_x, target_x), source_y)` batches (see
    `keras_transfer.models.source_only`). The CORAL loss (`keras_transfer.losses.coral_loss`,
    `||C_s - C_t||_F^2 / 4d^2`) is computed on the output of the label classifier
    (`coral_on="logits"`, the paper's fc8 choice) or of the feature extractor
    (`coral_on="features"`). Metrics: `loss`, `label_loss`, `label_accuracy`, `coral_loss`.

    Under `tf.distribute` (e.g. `MirroredStrategy`) the covariances are those of the
    GLOBAL source and target batches: every replica gathers both representations
    (keeping gradients) and computes the same CORAL loss, so training equals one device
    on the same global batches (per-replica covariances would be a different, noisier
    loss). The label loss is the per-replica mean scaled by the replica count, as in
    `SourceOnly`, which is the global mean when the replicas hold equal batches.

    Args:
        feature_extractor: Keras model or layer, inputs to features.
        label_classifier: Keras model or layer, features to class scores.
        coral_weight: λ, the weight of the CORAL loss (non-negative).
        coral_on: `"logits"` or `"features"`.
        from_logits: whether `label_classifier` outputs logits (default) or probabilities.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of inputs of the feature extractor.
        training: whether the networks run in training mode.

    Raises:
        ValueError: if a network is not a Keras layer or model, `coral_weight` is
            negative or `coral_on` is unknown.

    Reference:
        Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain
        Adaptation", ECCV 2016 Workshops.

    Example:

    >>> feature_extractor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu")])
    >>> model = keras_transfer.models.DeepCORAL(feature_extractor, keras.layers.Dense(3),
    ...                                         coral_weight=1.0, coral_on="features")
    >>> tuple(model(np.zeros((2, 4))).shape)  # the label path
    (2, 3)
    """

    def __init__(
        self,
        feature_extractor,
        label_classifier,
        coral_weight=1.0,
        coral_on="logits",
        from_logits=True,
        **kwargs,
    ):
        super().__init__(feature_extractor, label_classifier, from_logits=from_logits, **kwargs)
        self.coral_weight = validation.check_non_negative_float("coral_weight", coral_weight)
        self.coral_on = validation.check_one_of("coral_on", coral_on, _LAYERS)
        self.coral_loss_tracker = keras.metrics.Mean(name="coral_loss")
        self._build_from_feature_extractor()

    def _adaptation_trackers(self):
        return [self.coral_loss_tracker]

    def _adaptation(self, source_features, target_features, source_scores, training):
        if self.coral_on == "logits":
            source = source_scores
            target = self.label_classifier(target_features, training=training)
        else:
            source, target = source_features, target_features
        # Global-batch covariances: the gathered rows keep their gradients, and the loss
        # (the same on every replica) is divided by the replica count in `train_step`.
        value = coral_loss(distributed.all_gather_with_grad(source), distributed.all_gather_with_grad(target))
        return self.coral_weight * value, {"coral_loss": (value, None)}

    def get_config(self):
        config = super().get_config()
        config.update({"coral_weight": self.coral_weight, "coral_on": self.coral_on})
        return config
