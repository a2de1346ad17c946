"""Private base of the reconstruction pretext models (denoising autoencoder, masked imputation)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models import _contrastive_utils as utils
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like


class ReconstructionPretext(ExportsDeclaredInputs, utils.BuildsOptimizerOnCompile, keras.Model):
    """Corrupt the input, encode, decode, regress the clean input (MSE in float32).

    Subclasses define `_corrupt(x01) -> (corrupted01, weights)`: inputs and targets
    are in [0, 1] (rescaled from `value_range`); `weights` selects which entries the
    loss counts (all for denoising, the hidden ones for imputation). The encoder
    sees the corrupted input mapped back to `value_range`. `call(x)` returns the
    encoder's features. The loss is NaN for a step on non-finite inputs or one that
    leaves a weight non-finite (`keras.callbacks.TerminateOnNaN` stops there).
    """

    def __init__(self, encoder, decoder=None, decoder_hidden_dim=128, value_range=(0, 255), seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        feature_dim = utils.check_encoder(encoder, type(self).__name__)
        self.value_range = utils.check_value_range(value_range)
        self.decoder_hidden_dim = decoder_hidden_dim
        input_shape = tuple(encoder.inputs[0].shape[1:])
        if decoder is None:
            if None in input_shape:
                raise ValueError(
                    "`decoder` must be given when the encoder input has unknown dimensions. "
                    f"Received: encoder input shape {tuple(encoder.inputs[0].shape)}"
                )
            decoder = utils.default_decoder(feature_dim, input_shape, decoder_hidden_dim)
        elif not isinstance(decoder, keras.layers.Layer):
            raise ValueError(
                "`decoder` must be a Keras model or layer mapping features to the input shape, or None. "
                f"Received: decoder of type {type(decoder).__name__}"
            )
        self.encoder = encoder
        self.decoder = decoder
        if not decoder.built:
            decoder.build(utils.encoder_output_shape(encoder))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.build(tuple(encoder.inputs[0].shape))

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=False):
        return float32_outputs(self.encoder(inputs, training=training))

    def serving_input_signature(self):
        """`export()`'s input: a batch of the encoder's inputs (works straight after `fit`)."""
        return [input_spec_like(self.encoder.inputs[0])]

    def reconstruct(self, x):
        """The decoder's reconstruction of `x` (uncorrupted), in `value_range`."""
        low, high = self.value_range
        return self.decoder(self.encoder(x, training=False), training=False) * (high - low) + low

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _corrupt(self, x01):
        raise NotImplementedError

    def _loss(self, x, training):
        if isinstance(x, (tuple, list, dict)):
            raise ValueError(
                f"{type(self).__name__} trains on one batch of inputs `x` (no labels needed). "
                f"Received: a {type(x).__name__} of {len(x)} tensors"
            )
        utils.check_input_rank(x, self.encoder)
        low, high = self.value_range
        x01 = (ops.cast(x, "float32") - low) / (high - low)
        corrupted, weights = self._corrupt(x01)
        features = self.encoder(ops.cast(corrupted * (high - low) + low, self.compute_dtype), training=training)
        reconstruction = ops.cast(self.decoder(features, training=training), "float32")
        squared = ops.square(reconstruction - x01) * weights
        # Mean over the counted entries; an all-zero mask counts as one entry (loss 0), not NaN.
        loss = ops.sum(squared) / ops.maximum(ops.sum(weights), 1.0)
        return loss, ops.sum(weights), utils.all_finite([x])

    def _report(self, loss, count, finite):
        # NaN when the inputs or any weight are not finite (TerminateOnNaN then stops).
        finite = ops.logical_and(finite, utils.weights_finite(self))
        self.loss_tracker.update_state(utils.nan_unless(finite, loss), sample_weight=count)
        return {"loss": self.loss_tracker.result()}

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            loss, count, finite = self._loss(x, training=True)
            if self.losses:
                loss = loss + ops.cast(sum(self.losses), "float32")
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, trainable), trainable)
        return self._report(loss, count, finite)  # weights checked after the update

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._report(*self._loss(x, training=False))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "decoder_hidden_dim": self.decoder_hidden_dim,
                "value_range": list(self.value_range),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


