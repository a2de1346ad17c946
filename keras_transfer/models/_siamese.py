"""Private base of the two-view models with a predictor and no negatives (SimSiam, BYOL)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._contrastive_utils import TwoViewPretext
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import encoder_output_shape
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_positive_int


def batch_norm_mlp(input_dim, hidden_dim, output_dim, name, output_bn=False):
    """`Dense(hidden) -> BatchNorm -> ReLU -> Dense(output)` (then BatchNorm if `output_bn`, SimSiam's
    projector), the papers' projector / predictor block.

    Built in the scope of a strategy with several replicas, the BatchNorm layers are synchronized:
    their statistics span the global batch (the papers' SyncBN), so a step on R replicas equals a
    step on one device. On one device they are Keras's plain BatchNormalization (its exact moments;
    the synchronized moments are computed as E[x^2] - E[x]^2)."""
    synchronized = keras.backend.backend() == "tensorflow" and tf.distribute.get_strategy().num_replicas_in_sync > 1
    inputs = keras.Input((input_dim,))
    h = keras.layers.Dense(hidden_dim, use_bias=False, name="hidden")(inputs)
    h = keras.layers.BatchNormalization(synchronized=synchronized, name="hidden_bn")(h)
    h = keras.layers.ReLU()(h)
    outputs = keras.layers.Dense(output_dim, use_bias=not output_bn, name="output")(h)
    if output_bn:
        outputs = keras.layers.BatchNormalization(synchronized=synchronized, name="output_bn")(outputs)
    return keras.Model(inputs, outputs, name=name)


def projection_std(z):
    """SimSiam's collapse monitor (Chen & He 2021, §4.1): the per-dimension standard deviation of the
    l2-normalised projections, averaged over dimensions; about `1 / sqrt(dim)` for spread outputs, 0 once
    every example maps to one vector."""
    z = z / ops.maximum(ops.norm(z, axis=-1, keepdims=True), 1e-12)
    return ops.mean(ops.std(z, axis=0))


class PredictivePretext(TwoViewPretext):
    """`TwoViewPretext` with a prediction head on the projections (SimSiam, BYOL).

    The default projection head is `Dense(hidden) -> BatchNorm -> ReLU -> Dense(projection_dim)`
    (BYOL's projector; SimSiam's sets `projection_output_bn` for a BatchNorm on the output); the
    default prediction head has the BYOL form, mapping projections to projections. Subclasses set
    `default_bottleneck` (predictor hidden size = projection_dim // 4, SimSiam) or not (= the
    projector's hidden size, BYOL) and implement `step_loss`, calling `branch` and `loss_shares`.
    Metrics: `loss`, `projection_std`.
    """

    keras_object_args = ("encoder", "projection_head", "prediction_head", "augmenter")
    default_bottleneck = False
    projection_output_bn = False

    def __init__(
        self,
        encoder,
        projection_head,
        projection_dim,
        projection_hidden_dim,
        prediction_head,
        prediction_hidden_dim,
        augmenter,
        **kwargs,
    ):
        feature_dim = check_encoder(encoder, type(self).__name__)
        projection_dim = check_positive_int("projection_dim", projection_dim)
        hidden = feature_dim if projection_hidden_dim is None else projection_hidden_dim
        if projection_head is None:
            hidden = check_positive_int("projection_hidden_dim", hidden)
            projection_head = batch_norm_mlp(
                feature_dim, hidden, projection_dim, name="projection_head", output_bn=self.projection_output_bn
            )
        super().__init__(encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs)
        output_dim = int(self.projection_head.compute_output_shape(encoder_output_shape(encoder))[-1])
        self.prediction_hidden_dim = prediction_hidden_dim
        if prediction_head is None:
            if prediction_hidden_dim is None:
                prediction_hidden_dim = max(1, output_dim // 4) if self.default_bottleneck else hidden
            prediction_hidden_dim = check_positive_int(
                "prediction_hidden_dim", prediction_hidden_dim, fix="Pass a positive size or None for the default"
            )
            prediction_head = batch_norm_mlp(output_dim, prediction_hidden_dim, output_dim, name="prediction_head")
        elif not isinstance(prediction_head, keras.layers.Layer):
            raise ValueError(
                "`prediction_head` must be a Keras model or layer, or None for the default MLP. "
                f"Received: prediction_head of type {type(prediction_head).__name__}"
            )
        if not prediction_head.built:
            prediction_head.build((None, output_dim))
        self.prediction_head = prediction_head
        self.trackers = [keras.metrics.Mean(name="loss"), keras.metrics.Mean(name="projection_std")]

    @property
    def metrics(self):
        return list(self.trackers)

    def branch(self, view, training):
        """`(z, p)`: float32 projections `g(f(view))` and predictions `q(z)` of the online network."""
        z = self.embed(view, training)
        p = ops.cast(self.prediction_head(z, training=training), "float32")
        return z, p

    def loss_shares(self, terms, projections, views):
        """`step_loss`'s result from per-example loss `terms` of this replica (global-batch mean)."""
        count = ops.shape(terms)[0]
        loss = distributed.global_mean(float32_sum(terms), count)
        spread = 0.5 * (projection_std(projections[0]) + projection_std(projections[1]))
        shares = {"loss": loss, "projection_std": distributed.global_mean(spread * ops.cast(count, "float32"), count)}
        return self.with_regularization(loss), shares, count, all_finite(list(views))

    def get_config(self):
        config = super().get_config()
        config["prediction_hidden_dim"] = self.prediction_hidden_dim
        return config
