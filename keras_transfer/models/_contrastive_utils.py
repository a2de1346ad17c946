"""Private helpers shared by the self-supervised models (SimCLR, MoCo, pretext tasks)."""

import keras
from keras import ops

# One NaN-logging rule for every model: the SSL models reach it as utils.all_finite etc.
from keras_transfer.models._finite_logs import all_finite  # noqa: F401
from keras_transfer.models._finite_logs import nan_unless  # noqa: F401
from keras_transfer.models._finite_logs import weights_finite  # noqa: F401
from keras_transfer.utils.validation import check_positive_int


class BuildsOptimizerOnCompile:
    """Mixin for the train_step models: `compile` builds the optimizer at once.

    Keras otherwise creates optimizer variables inside the first traced step, so a
    `fit` that failed on bad data cannot be retried on the same model ("Creating
    variables on a non-first call"). Overriding `compile` requires the compile-config
    pair too, or a reloaded `.keras` model comes back uncompiled (DESIGN.md §3).
    """

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))


def check_encoder(encoder, owner):
    """The encoder must be a built Keras model/layer mapping inputs to (batch, features)."""
    if not isinstance(encoder, keras.layers.Layer):
        raise ValueError(
            f"`encoder` must be a Keras model or layer. Received: encoder of type "
            f"{type(encoder).__name__}"
        )
    if not encoder.built or not hasattr(encoder, "inputs") or not encoder.inputs:
        raise ValueError(
            f"`encoder` must be a built functional or Sequential model with a known input "
            f"shape so that {owner} can build its heads. Received: an unbuilt {type(encoder).__name__}. "
            "Build it with `keras.Input(shape=...)` or call `encoder.build(input_shape)`."
        )
    output_shape = encoder_output_shape(encoder)
    if len(output_shape) != 2:
        raise ValueError(
            f"`encoder` must output (batch, features) vectors. Received: output shape {output_shape}. "
            "Add keras.layers.GlobalAveragePooling2D() (or pooling='avg' for keras.applications)."
        )
    return int(output_shape[-1])


def encoder_output_shape(encoder):
    return tuple(encoder.compute_output_shape(tuple(encoder.inputs[0].shape)))


def input_rank(encoder):
    return len(encoder.inputs[0].shape)


def check_input_rank(x, encoder, name="x"):
    expected = input_rank(encoder)
    if x.shape.rank is None:  # a retraced step with relaxed shapes: nothing to check statically
        return
    if len(x.shape) != expected:
        raise ValueError(
            f"`{name}` must have rank {expected} to match the encoder input "
            f"{tuple(encoder.inputs[0].shape)}. Received: {name}.shape={tuple(x.shape)}"
            + (". Add a channel axis to grayscale images (x[..., None])." if expected == len(x.shape) + 1 else "")
        )


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


def float32_sum(values):
    return ops.sum(ops.cast(values, "float32"))


def default_decoder(feature_dim, output_shape, hidden_dim, name="decoder"):
    """MLP decoder features -> `output_shape` (linear output), for the reconstruction tasks."""
    hidden_dim = check_positive_int("decoder_hidden_dim", hidden_dim)
    inputs = keras.Input((feature_dim,))
    h = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")(inputs)
    size = 1
    for dim in output_shape:
        size *= int(dim)
    out = keras.layers.Dense(size, name="reconstruction")(h)
    out = keras.layers.Reshape(tuple(int(d) for d in output_shape))(out)
    return keras.Model(inputs, out, name=name)


def check_value_range(value_range):
    if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2
            and float(value_range[0]) < float(value_range[1])):
        raise ValueError(
            "`value_range` must be a pair (low, high) with low < high, e.g. (0, 255) or (0, 1). "
            f"Received: value_range={value_range!r}"
        )
    return (float(value_range[0]), float(value_range[1]))
