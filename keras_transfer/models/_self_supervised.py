"""Private base of the encoder pre-training models (SimCLR, MoCo, the pretext tasks)."""

import random

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._finite_logs import weights_finite
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_non_negative_int


def check_encoder(encoder, owner):
    """The encoder must be a built Keras model/layer mapping inputs to (batch, features)."""
    if not isinstance(encoder, keras.layers.Layer):
        raise ValueError(
            f"`encoder` must be a Keras model or layer. Received: encoder of type {type(encoder).__name__}"
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


def check_input_rank(x, encoder, name="x"):
    expected = len(encoder.inputs[0].shape)
    if x.shape.rank is None:  # a retraced step with relaxed shapes: nothing to check statically
        return
    if len(x.shape) != expected:
        raise ValueError(
            f"`{name}` must have rank {expected} to match the encoder input "
            f"{tuple(encoder.inputs[0].shape)}. Received: {name}.shape={tuple(x.shape)}"
            + (". Add a channel axis to grayscale images (x[..., None])." if expected == len(x.shape) + 1 else "")
        )


def float32_sum(values):
    return ops.sum(ops.cast(values, "float32"))


def resolve_seed(seed):
    """A non-negative int seed; None draws one from Python's `random` (which
    `keras.utils.set_random_seed` seeds), to be kept in the config so that a reloaded
    model continues the same stream."""
    if seed is None:
        seed = random.randint(0, 2**31 - 1)
    return check_non_negative_int("seed", seed, fix="Pass None to draw one")


def step_seed(seed, step):
    """The stateless seed pair `(seed, step)` of an optimizer step."""
    return tf.stack([tf.constant(seed, "int64"), tf.cast(step, "int64")])


class SelfSupervisedModel(ExportsDeclaredInputs, TrainStepModel):
    """Trains `self.encoder` (set by the subclass) with a loss made from the inputs alone.

    `call(x)` (so `predict` and `export`) returns the encoder's features in float32;
    `export()` serves the encoder's declared input and works straight after `fit`.
    `compile` defaults to Adam and builds the optimizer at once (`TrainStepModel`).
    Everything is built in `__init__`: `build` only records that.

    Subclasses implement `step_loss(x, training)`; `train_step` differentiates it and
    logs its shares of global-batch means under `tf.distribute`
    (`report_global_means`), NaN for a step on non-finite inputs or one that leaves
    a weight non-finite, so `keras.callbacks.TerminateOnNaN` stops there.
    """

    keras_object_args = ("encoder",)

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)

    def build(self, input_shape):
        # Sub-models are built in __init__; recording the input shape lets `export()` trace.
        self.built = True

    def call(self, inputs, training=False):
        return float32_outputs(self.encoder(inputs, training=training))

    def serving_input_signature(self):
        """`export()`'s input: a batch of the encoder's inputs (works straight after `fit`)."""
        return [input_spec_like(self.encoder.inputs[0])]

    def step_loss(self, x, training):
        """The loss of one batch `x` (subclasses).

        Args:
            x: one batch of inputs (for contrastive models a pair of views, or one
                batch that the `augmenter` turns into two).
            training: whether the networks run in training mode.

        Returns:
            `(loss, shares, count, finite)`: the loss `train_step` differentiates
            (this replica's share of the global-batch mean, regularisation included,
            see `with_regularization`), then the arguments of `report_global_means`.

        Raises:
            ValueError: if `x` does not have the structure or rank the model trains on.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `step_loss(x, training)`.")

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            loss, shares, count, finite = self.step_loss(x, training=True)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, trainable), trainable)
        return self.report_global_means(shares, count, finite)  # weights checked after the update

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        _, shares, count, finite = self.step_loss(x, training=False)
        return self.report_global_means(shares, count, finite)

    def with_regularization(self, loss):
        """`loss` plus this replica's share of the layers' regularisation losses (the
        optimizer sums the replicas' gradients)."""
        if not self.losses:
            return loss
        return loss + ops.cast(sum(self.losses), "float32") / distributed.num_replicas()

    def report_global_means(self, shares, count, finite):
        """Updates every tracker of `self.metrics` and returns the step's logs.

        Args:
            shares: tracker name -> this replica's share of a global-batch mean (the
                plain mean on one device).
            count: this replica's number of examples (or weight); the epoch value is
                the mean over examples, a final partial batch counting for what it holds.
            finite: scalar bool, whether the step's inputs were finite.

        Every replica logs the same global values (the sums carry one replica's NaN to
        all), so any metric aggregation is exact. Call after the optimizer step: the
        weights are checked after the update.
        """
        finite = ops.logical_and(finite, weights_finite(self))
        weight = distributed.all_reduce_sum(ops.cast(count, "float32"))
        for tracker in self.metrics:
            share = nan_unless(finite, tf.stop_gradient(shares[tracker.name]))
            tracker.update_state(distributed.all_reduce_sum(share), sample_weight=weight)
        return self.get_metrics_result()
