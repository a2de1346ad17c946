"""Private base of the reconstruction pretext models (denoising autoencoder, masked imputation)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import check_input_rank
from keras_transfer.models._self_supervised import encoder_output_shape
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.models._self_supervised import step_seed
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_positive_int
from keras_transfer.utils.validation import check_value_range


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


class ReconstructionPretext(SelfSupervisedModel):
    """Corrupt the input, encode, decode, regress the clean input (MSE in float32).

    Subclasses define `_corrupt(x01, seed=None) -> (corrupted01, weights)`: inputs and
    targets are in [0, 1] (rescaled from `value_range`); `weights` selects which entries
    the loss counts (all for denoising, the hidden ones for imputation). The encoder
    sees the corrupted input mapped back to `value_range`. `call(x)` returns the
    encoder's features. The loss is NaN for a step on non-finite inputs or one that
    leaves a weight non-finite (`keras.callbacks.TerminateOnNaN` stops there).

    Noise is stateless: a function of `(seed, optimizer.iterations)` (as MoCo's
    permutation), so a run resumed by `keras.callbacks.BackupAndRestore` or a reloaded
    `.keras` model draws exactly the noise the uninterrupted run would have drawn
    (a `keras.random.SeedGenerator`'s state is not checkpointed). `evaluate` draws from
    its own stream, the same for every batch of one evaluation at a given step (so
    repeated evaluations of the same model agree). Under `tf.distribute` the noise is
    drawn for the GLOBAL batch and each replica takes its own rows, and the loss is the
    global-batch mean: training equals one device on the same global batches.
    """

    keras_object_args = ("encoder", "decoder")

    def __init__(self, encoder, decoder=None, decoder_hidden_dim=128, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        # A drawn seed is kept in the config, so a reloaded model continues the same stream.
        self.seed = resolve_seed(seed)
        feature_dim = check_encoder(encoder, type(self).__name__)
        self.value_range = check_value_range(value_range)
        self.decoder_hidden_dim = decoder_hidden_dim
        input_shape = tuple(encoder.inputs[0].shape[1:])
        if decoder is None:
            if None in input_shape:
                raise ValueError(
                    "`decoder` must be given when the encoder input has unknown dimensions. "
                    f"Received: encoder input shape {tuple(encoder.inputs[0].shape)}"
                )
            decoder = default_decoder(feature_dim, input_shape, decoder_hidden_dim)
        elif not isinstance(decoder, keras.layers.Layer):
            raise ValueError(
                "`decoder` must be a Keras model or layer mapping features to the input shape, or None. "
                f"Received: decoder of type {type(decoder).__name__}"
            )
        self.encoder = encoder
        self.decoder = decoder
        if not decoder.built:
            decoder.build(encoder_output_shape(encoder))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.build(tuple(encoder.inputs[0].shape))

    def reconstruct(self, x):
        """The decoder's reconstruction of `x` (uncorrupted), in `value_range`."""
        low, high = self.value_range
        return self.decoder(self.encoder(x, training=False), training=False) * (high - low) + low

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _corrupt(self, x01, seed=None):
        raise NotImplementedError

    def _noise_seed(self, training=True):
        """The stateless seed of the current step: `(seed, optimizer.iterations)`, with
        evaluation on a stream of its own."""
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
        return tf.random.experimental.stateless_fold_in(step_seed(self.seed, step), 0 if training else 1)

    def _random_rows(self, x, tail_shape, seed, distribution="uniform", stddev=1.0):
        """Noise of shape `(rows of x,) + tail_shape` for this replica's rows of the global batch.

        Drawn for the global batch (identical on every replica) and sliced at this
        replica's offset, so R replicas draw exactly what one device draws.
        """
        seed = self._noise_seed() if seed is None else seed
        rows = tf.shape(x)[0]
        shape = tf.concat([tf.reshape(distributed.global_batch_size(x), (1,)), tf.cast(tail_shape, "int32")], axis=0)
        if distribution == "normal":
            values = tf.random.stateless_normal(shape, seed, stddev=stddev)
        else:
            values = tf.random.stateless_uniform(shape, seed)
        offset = distributed.replica_offset(x)
        return values[offset : offset + rows]

    def step_loss(self, x, training):
        if isinstance(x, (tuple, list, dict)):
            raise ValueError(
                f"{type(self).__name__} trains on one batch of inputs `x` (no labels needed). "
                f"Received: a {type(x).__name__} of {len(x)} tensors"
            )
        check_input_rank(x, self.encoder)
        low, high = self.value_range
        x01 = (ops.cast(x, "float32") - low) / (high - low)
        corrupted, weights = self._corrupt(x01, self._noise_seed(training))
        features = self.encoder(ops.cast(corrupted * (high - low) + low, self.compute_dtype), training=training)
        reconstruction = ops.cast(self.decoder(features, training=training), "float32")
        squared = ops.square(reconstruction - x01) * weights
        # Mean over the counted entries of the GLOBAL batch (this replica's share of it);
        # an all-zero mask counts as one entry (loss 0), not NaN.
        count = ops.sum(weights)
        loss = ops.sum(squared) / ops.maximum(distributed.all_reduce_sum(count), 1.0)
        # The logged loss is the mean over the counted entries: weighted by their count.
        return self.with_regularization(loss), {"loss": loss}, count, all_finite([x])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "decoder_hidden_dim": self.decoder_hidden_dim,
                "value_range": list(self.value_range),
                "seed": self.seed,
            }
        )
        return config
