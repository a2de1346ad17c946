"""BYOL: bootstrap your own latent, an online network predicting a momentum target (Grill et al., 2020)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.losses.byol_loss import byol_terms
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._momentum import cosine_momentum
from keras_transfer.models._momentum import ema_update
from keras_transfer.models._momentum import frozen_clone
from keras_transfer.models._momentum import momentum_pairs
from keras_transfer.models._siamese import PredictivePretext
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_transfer")
class BYOL(PredictivePretext):
    """BYOL: an online encoder, projector and predictor regress a momentum target's projections.

    Trains like `SimCLR` (`fit` on pairs of views from `keras_transfer.augment.simclr_dataset`,
    or on plain batches with `augmenter=`), with no negatives. The online network gives
    `p = q(g(f(view)))`; the target network `(f_t, g_t)`, a copy of `(f, g)` made in
    `__init__`, gives `z' = g_t(f_t(view))` and receives no gradient. The loss is
    `keras_transfer.losses.byol_loss`, `(2 - 2 cos(p1, z2')) + (2 - 2 cos(p2, z1'))`
    averaged over the batch. After each optimizer step the target's parameters follow the
    online trainable parameters, `xi <- tau * xi + (1 - tau) * theta`, with the paper's
    cosine schedule `tau_k = 1 - (1 - momentum) * (cos(pi * k / total_steps) + 1) / 2`
    over the optimizer steps k (constant `momentum` when `total_steps` is None). The
    target's BatchNorm moving statistics come from its own forward passes (training-mode
    batch statistics in training), as MoCo's key encoder. The target network is made of
    model weights and the schedule reads the optimizer's step, so a `.keras` file saved
    mid-training resumes exactly. Under `tf.distribute` the loss is the global-batch mean
    and the default heads built in the strategy's scope use synchronized BatchNorm (as
    `SimSiam`): a step on R replicas, target update included, equals one on one device.

    `call(x)` (so `predict`, `export`) returns the online encoder's representation `f(x)`.
    Metrics: `loss` (0 at best, at most 8) and `projection_std` (see `SimSiam`); NaN for
    a step on non-finite views or one that leaves a weight non-finite.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`. Set its
            weights before building BYOL: the target encoder is copied here.
        projection_head: Keras model mapping features to projections, or None for
            `Dense(hidden) -> BatchNorm -> ReLU -> Dense(projection_dim)` (the paper's
            projector, 4096 hidden, 256 out).
        projection_dim: output size of the default projector (> 0).
        projection_hidden_dim: hidden size of the default projector (default: the
            encoder's feature size).
        prediction_head: Keras model mapping projections to projections, or None for the
            same MLP form (the paper's predictor).
        prediction_hidden_dim: hidden size of the default predictor (> 0; default the
            projector's hidden size, as in the paper).
        momentum: tau_base, the target's EMA coefficient at step 0, in [0, 1) (0.996).
        total_steps: number of optimizer steps over which tau rises to 1 (positive int,
            e.g. `epochs * steps_per_epoch`), or None for a constant tau.
        augmenter: optional layer that makes a view from a batch (e.g. `SimCLRAugmentation`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the online encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, a head is not a Keras layer, a
            size or `total_steps` is not positive, or `momentum` lies outside [0, 1).

    Reference:
        Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
        Learning", NeurIPS 2020.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.BYOL(encoder, projection_dim=4, total_steps=10)
    >>> model.compile(optimizer="adam")
    >>> rng = np.random.default_rng(0)
    >>> views = (rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32"))
    >>> sorted(model.fit(views, batch_size=4, epochs=1, verbose=0).history)
    ['loss', 'projection_std']
    >>> round(float(model.target_momentum(10)), 4), round(float(model.target_momentum(5)), 4)
    (1.0, 0.998)
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=256,
        projection_hidden_dim=None,
        prediction_head=None,
        prediction_hidden_dim=None,
        momentum=0.996,
        total_steps=None,
        augmenter=None,
        **kwargs,
    ):
        self.momentum = check_fraction("momentum", momentum)
        self.total_steps = None if total_steps is None else check_positive_int("total_steps", total_steps)
        super().__init__(
            encoder,
            projection_head,
            projection_dim,
            projection_hidden_dim,
            prediction_head,
            prediction_hidden_dim,
            augmenter,
            **kwargs,
        )
        self.target_encoder = frozen_clone(encoder)
        self.target_projection_head = frozen_clone(self.projection_head)
        self.build(tuple(encoder.inputs[0].shape))

    def target_momentum(self, step):
        """The EMA coefficient tau used after optimizer step `step` (0-based), a float32 scalar tensor.

        Args:
            step: int or int tensor, the optimizer's step count before the update.

        Returns:
            `1 - (1 - momentum) * (cos(pi * min(step / total_steps, 1)) + 1) / 2`, or
            `momentum` when `total_steps` is None.
        """
        return cosine_momentum(self.momentum, step, self.total_steps)

    def _target_projections(self, view, training):
        z = self.target_projection_head(self.target_encoder(view, training=training), training=training)
        return tf.stop_gradient(ops.cast(z, "float32"))

    def step_loss(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "BYOL")
        # Each view through the networks on its own (BatchNorm statistics per view), as the paper's code.
        z1, p1 = self.branch(view_1, training)
        z2, p2 = self.branch(view_2, training)
        t1, t2 = self._target_projections(view_1, training), self._target_projections(view_2, training)
        return self.loss_shares(byol_terms(p1, p2, t1, t2), (z1, z2), (view_1, view_2))

    def _online_trainable_variables(self):
        target_ids = {id(v) for v in self.target_encoder.weights + self.target_projection_head.weights}
        return [v for v in self.trainable_variables if id(v) not in target_ids]

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self._online_trainable_variables()
        tau = self.target_momentum(ops.convert_to_tensor(self.optimizer.iterations))  # read before the update
        with tf.GradientTape() as tape:
            loss, shares, count, finite = self.step_loss(x, training=True)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, trainable), trainable)
        # As in the official code: the target follows the UPDATED online parameters.
        pairs = momentum_pairs([self.target_encoder, self.target_projection_head], [self.encoder, self.projection_head])
        ema_update(pairs, tau)
        return self.report_global_means(shares, count, finite)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "total_steps": self.total_steps})
        return config
