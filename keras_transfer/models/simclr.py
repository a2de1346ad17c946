"""SimCLR: contrastive pre-training of an encoder with two augmented views (Chen et al., 2020)."""

import keras
from keras import ops

from keras_transfer.losses.nt_xent import nt_xent_terms
from keras_transfer.models._contrastive_utils import ContrastivePretext
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.utils import distributed


@keras.saving.register_keras_serializable(package="keras_transfer")
class SimCLR(ContrastivePretext):
    """SimCLR: encoder f, projection head g, NT-Xent between two views of each image.

    Train with `fit` on pairs of views (`keras_transfer.augment.simclr_dataset(x)`
    yields `((view_1, view_2),)`) or on plain batches with `augmenter=` (views made
    inside the step). Under `tf.distribute` the negatives of every anchor span the
    GLOBAL batch (`cross_replica=True`, the default): projections are all-gathered
    with their gradients and the positives sit at `replica offset + row`; each
    replica differentiates its share of the global mean, so the loss and the
    gradients equal single-device training on the same global batch, also for
    an uneven final batch. (BatchNorm layers still use per-replica batch statistics;
    SimCLR's "global BN" would need a synchronized BatchNorm in the encoder.)

    `call(x)` (so `predict`, `export`) returns the encoder's representation
    `h = f(x)`, which downstream tasks use; `self.encoder` is the pre-trained
    encoder for a fine-tuning recipe.

    Metrics: `loss` (NT-Xent, mean over the 2N anchors of the global batch) and
    `contrastive_accuracy` (share of anchors whose positive is the most similar
    of the 2N - 1 candidates). Both are NaN for a step whose views hold NaN or
    infinite values or that leaves a weight non-finite, so
    `keras.callbacks.TerminateOnNaN` stops there.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        projection_head: a Keras model mapping features to projections, or None
            for SimCLR's MLP `Dense(hidden, relu) -> Dense(projection_dim)`.
        projection_dim: output size of the default head (> 0).
        projection_hidden_dim: hidden size of the default head (default: the
            encoder's feature size).
        temperature: NT-Xent temperature (> 0).
        augmenter: optional layer that makes a view from a batch (e.g.
            `SimCLRAugmentation`), used when `x` is one batch instead of a pair.
        cross_replica: global-batch negatives under `tf.distribute`.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the projection head is not a
            Keras layer, or `projection_dim` or `temperature` is not positive.

    Reference:
        Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
        Learning of Visual Representations", ICML 2020.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.SimCLR(encoder, projection_dim=4, temperature=0.5)
    >>> model.compile(optimizer="adam")
    >>> views = (np.ones((4, 4), "float32"), np.ones((4, 4), "float32"))
    >>> history = model.fit(views, batch_size=4, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['contrastive_accuracy', 'loss']
    >>> tuple(model(np.ones((2, 4))).shape)  # the representation h = f(x)
    (2, 8)
    >>> tuple(model.projection_head(model(np.ones((2, 4)))).shape)  # z = g(h), where the loss is taken
    (2, 4)
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=128,
        projection_hidden_dim=None,
        temperature=0.1,
        augmenter=None,
        cross_replica=True,
        **kwargs,
    ):
        super().__init__(
            encoder, projection_head, projection_dim, projection_hidden_dim, temperature, augmenter, **kwargs
        )
        self.cross_replica = bool(cross_replica)
        self.build(tuple(encoder.inputs[0].shape))

    def step_loss(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "SimCLR")
        batch = ops.shape(view_1)[0]
        # One encoder pass over both views (BatchNorm sees the 2N images, as in SimCLR).
        h = self.encoder(ops.concatenate([view_1, view_2], axis=0), training=training)
        z = self.projection_head(h, training=training)
        losses, hits = nt_xent_terms(
            z[:batch], z[batch:], temperature=self.temperature, cross_replica=self.cross_replica
        )
        count = 2 * batch
        # This replica's share of the global-batch mean (identity on one device); the
        # logged loss includes the regularisation losses.
        loss = self.with_regularization(distributed.global_mean(float32_sum(losses), count))
        accuracy = distributed.global_mean(float32_sum(hits), count)
        shares = {"loss": loss, "contrastive_accuracy": accuracy}
        return loss, shares, count, all_finite([view_1, view_2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cross_replica": self.cross_replica,
            }
        )
        return config
