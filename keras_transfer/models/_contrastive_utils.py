"""Private base and helpers of the contrastive models (SimCLR, MoCo): two views, a projection head."""

import keras

from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import check_input_rank
from keras_transfer.models._self_supervised import encoder_output_shape
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


class ContrastivePretext(SelfSupervisedModel):
    """An encoder, a projection head on its features, a temperature, two views per example.

    Sets `encoder`, `projection_head` (the default MLP for None, built on the encoder's
    output), `augmenter`, `projection_dim`, `projection_hidden_dim`, `temperature`, and
    the `loss` / `contrastive_accuracy` trackers that `metrics` lists; serialises them.
    Subclasses add their own state and implement `step_loss` (views from `split_views`).
    """

    keras_object_args = ("encoder", "projection_head", "augmenter")

    def __init__(
        self, encoder, projection_head, projection_dim, projection_hidden_dim, temperature, augmenter, **kwargs
    ):
        super().__init__(**kwargs)
        feature_dim = check_encoder(encoder, type(self).__name__)
        self.projection_dim = check_positive_int("projection_dim", projection_dim)
        self.projection_hidden_dim = projection_hidden_dim
        self.temperature = check_positive_float("temperature", temperature)
        self.encoder = encoder
        self.projection_head = resolve_projection_head(
            projection_head, feature_dim, projection_hidden_dim, self.projection_dim
        )
        if not self.projection_head.built:
            self.projection_head.build(encoder_output_shape(encoder))
        self.augmenter = augmenter
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "projection_dim": self.projection_dim,
                "projection_hidden_dim": self.projection_hidden_dim,
                "temperature": self.temperature,
            }
        )
        return config
