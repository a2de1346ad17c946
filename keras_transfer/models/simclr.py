"""SimCLR: contrastive pre-training of an encoder with two augmented views (Chen et al., 2020)."""

import keras
from keras import ops

from keras_transfer.losses.nt_xent import nt_xent_terms
from keras_transfer.models._contrastive_utils import ContrastivePretext
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.ops.gradient_cache import gradient_cache
from keras_transfer.utils import distributed
from keras_transfer.utils import validation


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
        chunk_size: None, or gradient caching (`keras_transfer.ops.gradient_cache`):
            `fit` embeds the 2N views `chunk_size` at a time without their graphs,
            takes the loss's gradient with respect to the projections, then
            back-propagates chunk by chunk, so activation memory is one chunk's and
            the batch (the number of negatives) can grow several-fold. Same loss and
            gradients as the plain step when the encoder has no BatchNorm (its batch
            statistics become chunk statistics); about one extra forward pass.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the projection head is not a
            Keras layer, or `projection_dim` or `temperature` is not positive.

    Reference:
        Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
        Learning of Visual Representations", ICML 2020; Gao, Zhang, Han & Callan,
        "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
        RepL4NLP 2021 (gradient caching).

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
        chunk_size=None,
        **kwargs,
    ):
        super().__init__(
            encoder, projection_head, projection_dim, projection_hidden_dim, temperature, augmenter, **kwargs
        )
        self.cross_replica = bool(cross_replica)
        self.chunk_size = None if chunk_size is None else validation.check_positive_int("chunk_size", chunk_size)
        self.build(tuple(encoder.inputs[0].shape))

    def projection_loss(self, z, batch):
        """NT-Xent on the projections of both views.

        Args:
            z: projections `(2 * batch, dim)`: the first views' rows, then the second views'.
            batch: the number of pairs on this replica.

        Returns:
            `(loss, shares)`: this replica's share of the global-batch loss
            (regularisation included), and the shares `report_global_means` logs.
        """
        losses, hits = nt_xent_terms(
            z[:batch], z[batch:], temperature=self.temperature, cross_replica=self.cross_replica
        )
        count = 2 * batch
        # This replica's share of the global-batch mean (identity on one device); the
        # logged loss includes the regularisation losses.
        loss = self.with_regularization(distributed.global_mean(float32_sum(losses), count))
        accuracy = distributed.global_mean(float32_sum(hits), count)
        return loss, {"loss": loss, "contrastive_accuracy": accuracy}

    def step_loss(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "SimCLR")
        batch = ops.shape(view_1)[0]
        # One encoder pass over both views (BatchNorm sees the 2N images, as in SimCLR).
        loss, shares = self.projection_loss(self.embed(ops.concatenate([view_1, view_2], axis=0), training), batch)
        return loss, shares, 2 * batch, all_finite([view_1, view_2])

    def train_step(self, data):
        if self.chunk_size is None:
            return super().train_step(data)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "SimCLR")
        batch = ops.shape(view_1)[0]

        def loss_fn(z):
            loss, shares = self.projection_loss(z, batch)
            return self.optimizer.scale_loss(loss), shares

        trainable = self.trainable_variables
        _, shares, grads = gradient_cache(
            lambda images: self.embed(images, training=True),
            loss_fn,
            ops.concatenate([view_1, view_2], axis=0),
            self.chunk_size,
            trainable,
            self.encoder.non_trainable_variables + self.projection_head.non_trainable_variables,
        )
        self.optimizer.apply(grads, trainable)
        return self.report_global_means(shares, 2 * batch, all_finite([view_1, view_2]))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cross_replica": self.cross_replica,
                "chunk_size": self.chunk_size,
            }
        )
        return config
