"""Rotation prediction: a proxy (pretext) task for images (Gidaris et al., 2018)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import check_input_rank
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_one_of


@keras.saving.register_keras_serializable(package="keras_transfer")
class RotationPrediction(SelfSupervisedModel):
    """Rotates every image by 0, 90, 180 and 270 degrees and classifies the rotation.

    Each batch of B images becomes 4B rotated copies with labels 0..3 (quarter turns,
    counter-clockwise); the encoder and a linear `rotation_head` are trained with
    sparse cross-entropy (float32). Images must be square. `call(x)` returns the
    encoder's features. The metrics are NaN for a step on non-finite images or
    one that leaves a weight non-finite (`keras.callbacks.TerminateOnNaN` stops there).

    Under `tf.distribute` (e.g. `MirroredStrategy`) the loss and accuracy are means
    over the GLOBAL batch (`local_sum / global_count` on each replica), so training
    equals one device on the same global batches. BatchNorm layers in the encoder
    normalise with per-replica statistics, as in any Keras model under `tf.distribute`.

    Args:
        encoder: a built Keras model mapping square images to `(batch, features)`.
        num_rotations: 4 (quarter turns) or 2 (0 and 180 degrees).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model taking square images, or
            `num_rotations` is not 2 or 4.

    Reference:
        Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by
        Predicting Image Rotations", ICLR 2018.

    Example:

    >>> encoder = keras.Sequential([
    ...     keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    >>> model = keras_transfer.models.RotationPrediction(encoder)
    >>> tuple(model(np.zeros((2, 4, 4, 1))).shape)  # the encoder's features
    (2, 3)
    >>> rotated, labels = model.rotate(np.zeros((2, 4, 4, 1), "float32"))
    >>> tuple(rotated.shape), keras.ops.convert_to_numpy(labels).tolist()
    ((8, 4, 4, 1), [0, 0, 1, 1, 2, 2, 3, 3])
    """

    def __init__(self, encoder, num_rotations=4, **kwargs):
        super().__init__(**kwargs)
        feature_dim = check_encoder(encoder, "RotationPrediction")
        self.num_rotations = check_one_of("num_rotations", num_rotations, (2, 4))
        shape = tuple(encoder.inputs[0].shape)
        if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None:
            raise ValueError(
                "`encoder` must take square images (batch, size, size, channels) for rotation "
                f"prediction. Received: encoder input shape {shape}"
            )
        self.encoder = encoder
        self.rotation_head = keras.layers.Dense(self.num_rotations, dtype="float32", name="rotation_head")
        self.rotation_head.build((None, feature_dim))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="rotation_accuracy")
        self.build(shape)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def rotate(self, images):
        """Every image rotated by each of the `num_rotations` angles, with the rotation labels.

        Args:
            images: `(B, size, size, channels)` square images.

        Returns:
            `(rotated, labels)`: `(num_rotations * B, size, size, channels)` copies, the
            B images at each angle in turn, and int32 labels `(num_rotations * B,)` (label
            k: k * 4 / num_rotations counter-clockwise quarter turns).
        """
        step = 4 // self.num_rotations
        turns = [k * step for k in range(self.num_rotations)]
        rotated = ops.concatenate([tf.image.rot90(images, k=k) for k in turns], axis=0)
        batch = ops.shape(images)[0]
        labels = ops.repeat(ops.arange(self.num_rotations, dtype="int32"), batch)
        return rotated, labels

    def step_loss(self, x, training):
        if isinstance(x, (tuple, list, dict)):
            raise ValueError(
                f"RotationPrediction trains on one batch of images `x` (labels are made from the "
                f"rotations). Received: a {type(x).__name__} of {len(x)} tensors"
            )
        check_input_rank(x, self.encoder)
        rotated, labels = self.rotate(x)
        logits = self.rotation_head(self.encoder(rotated, training=training))
        logits = ops.cast(logits, "float32")
        losses = ops.logsumexp(logits, axis=1) - ops.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        hits = ops.cast(ops.equal(ops.argmax(logits, axis=1), labels), "float32")
        count = ops.shape(labels)[0]
        # This replica's share of the global-batch mean (the plain mean on one device).
        loss = distributed.global_mean(float32_sum(losses), count)
        accuracy = distributed.global_mean(float32_sum(hits), count)
        shares = {"loss": loss, "rotation_accuracy": accuracy}
        return self.with_regularization(loss), shares, count, all_finite([x])

    def get_config(self):
        config = super().get_config()
        config.update({"num_rotations": self.num_rotations})
        return config
