"""Private bases and helpers of the two-view models (SimCLR, MoCo, Barlow Twins, VICReg): a projection head."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import check_input_rank
from keras_transfer.models._self_supervised import encoder_output_shape
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_positive_float
from keras_transfer.utils.validation import check_positive_int


def split_views(x, augmenter, encoder, owner):
    """`x` as two views: a (view_1, view_2) pair, or one batch that `augmenter` views twice."""
    if isinstance(x, dict):
        x = tuple(x[k] for k in sorted(x))
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(
                f"{owner} needs two views per example: `x` must be a (view_1, view_2) pair or "
                f"one batch plus `augmenter=`. Received: a tuple of {len(x)} tensors"
            )
        view_1, view_2 = x
    else:
        if augmenter is None:
            raise ValueError(
                f"{owner} received one batch of inputs but has no `augmenter` to make two views. "
                "Feed `keras_transfer.augment.simclr_dataset(x)` (pairs of views) or pass "
                "`augmenter=SimCLRAugmentation(...)` to the model."
            )
        view_1, view_2 = augmenter(x, training=True), augmenter(x, training=True)
    for name, view in (("view_1", view_1), ("view_2", view_2)):
        check_input_rank(view, encoder, name)
    return view_1, view_2


def projection_mlp(input_dim, hidden_dim, output_dim, name):
    """SimCLR's 2-layer projection head g(h) = W2 relu(W1 h)."""
    hidden_dim = check_positive_int("projection_hidden_dim", hidden_dim)
    output_dim = check_positive_int("projection_dim", output_dim)
    inputs = keras.Input((input_dim,))
    h = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(output_dim, name="projection")(h)
    return keras.Model(inputs, outputs, name=name)


def resolve_projection_head(projection_head, feature_dim, hidden_dim, output_dim):
    """The user's head (a Keras layer or model), or for None the MLP `Dense(hidden, relu) -> Dense(output)`."""
    if projection_head is None:
        return projection_mlp(
            feature_dim, hidden_dim if hidden_dim is not None else feature_dim, output_dim, name="projection_head"
        )
    if not isinstance(projection_head, keras.layers.Layer):
        raise ValueError(
            "`projection_head` must be a Keras model or layer, or None for the default MLP. "
            f"Received: projection_head of type {type(projection_head).__name__}"
        )
    return projection_head


class TwoViewPretext(SelfSupervisedModel):
    """An encoder, a projection head on its features, two views per example.

    Sets `encoder`, `projection_head` (the default MLP for None, built on the encoder's
    output), `augmenter`, `projection_dim`, `projection_hidden_dim`; serialises them.
    Subclasses add their loss's state and trackers and implement `step_loss` (views from
    `split_views`).
    """

    keras_object_args = ("encoder", "projection_head", "augmenter")

    def __init__(self, encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs):
        super().__init__(**kwargs)
        feature_dim = check_encoder(encoder, type(self).__name__)
        self.projection_dim = check_positive_int("projection_dim", projection_dim)
        self.projection_hidden_dim = projection_hidden_dim
        self.encoder = encoder
        self.projection_head = resolve_projection_head(
            projection_head, feature_dim, projection_hidden_dim, self.projection_dim
        )
        if not self.projection_head.built:
            self.projection_head.build(encoder_output_shape(encoder))
        self.augmenter = augmenter

    def embed(self, images, training):
        """Projections `z = g(f(images))`, where the loss is taken.

        Args:
            images: a batch of the encoder's inputs.
            training: whether the encoder and head run in training mode.

        Returns:
            float32 projections `(batch, projection_dim)`.
        """
        return ops.cast(self.projection_head(self.encoder(images, training=training), training=training), "float32")

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim, "projection_hidden_dim": self.projection_hidden_dim})
        return config


class ContrastivePretext(TwoViewPretext):
    """`TwoViewPretext` with a temperature and the `loss` / `contrastive_accuracy` trackers
    (SimCLR, MoCo)."""

    def __init__(
        self, encoder, projection_head, projection_dim, projection_hidden_dim, temperature, augmenter, **kwargs
    ):
        super().__init__(encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs)
        self.temperature = check_positive_float("temperature", temperature)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


class NonContrastivePretext(TwoViewPretext):
    """`TwoViewPretext` whose loss is a function of the whole (global) batch of the two views'
    projections, without negatives (Barlow Twins, VICReg): one tracker per term plus `loss`.

    Subclasses set `loss_names` (the terms after "loss") and implement `loss_terms(z1, z2)`
    returning `{"loss": ..., term: ...}` on gathered projections.
    """

    loss_names = ()

    def __init__(self, encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs):
        super().__init__(encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs)
        self.trackers = [keras.metrics.Mean(name=name) for name in ("loss",) + tuple(self.loss_names)]

    @property
    def metrics(self):
        return list(self.trackers)

    def loss_terms(self, z1, z2):
        raise NotImplementedError(f"{type(self).__name__} must implement `loss_terms(z1, z2)`.")

    def step_loss(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, type(self).__name__)
        # Each view through the networks on its own (BatchNorm statistics per view), as the papers' code.
        z1, z2 = self.embed(view_1, training), self.embed(view_2, training)
        # Batch statistics of the GLOBAL batch: every replica computes the loss on the gathered
        # projections and differentiates its 1 / R share (the optimizer sums the replicas' gradients).
        z1, z2 = distributed.all_gather_with_grad(z1), distributed.all_gather_with_grad(z2)
        enough = tf.debugging.assert_greater_equal(
            tf.shape(z1)[0],
            2,
            message=f"{type(self).__name__} received a (global) batch of fewer than 2 pairs: its loss uses batch "
            "statistics. Use a batch size >= 2 and drop_remainder=True.",
        )
        with tf.control_dependencies([enough]):
            terms = self.loss_terms(tf.identity(z1), z2)
        replicas = float(distributed.num_replicas())
        loss = self.with_regularization(terms["loss"] / replicas)
        shares = {name: tf.stop_gradient(value) / replicas for name, value in terms.items()}
        shares["loss"] = loss
        return loss, shares, ops.shape(view_1)[0], all_finite([view_1, view_2])
