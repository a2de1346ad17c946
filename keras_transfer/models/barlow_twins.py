"""Barlow Twins: self-supervised pre-training by redundancy reduction (Zbontar et al., 2021)."""

import keras

from keras_transfer.losses.barlow_twins import barlow_twins_terms
from keras_transfer.models._contrastive_utils import NonContrastivePretext
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class BarlowTwins(NonContrastivePretext):
    """Barlow Twins: encoder f, projector g, the views' cross-correlation pushed to the identity.

    Trains like `SimCLR` (`fit` on pairs of views from `keras_transfer.augment.simclr_dataset`,
    or on plain batches with `augmenter=`), with no negatives: each view goes through the
    networks on its own, the projections are standardised per feature over the batch, and
    `keras_transfer.losses.barlow_twins_loss` makes their cross-correlation matrix the
    identity (invariance on the diagonal, decorrelated features off it). Under
    `tf.distribute` the statistics span the global batch (projections all-gathered with
    their gradients), so a step on R replicas equals a step on one device.

    `call(x)` (so `predict`, `export`) returns the encoder's representation `h = f(x)`.
    Metrics: `loss`, `on_diagonal` (`sum_i (1 - C_ii)^2`) and `off_diagonal`
    (`sum_{i != j} C_ij^2`, before the weight); NaN for a step on non-finite views or one
    that leaves a weight non-finite.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        projection_head: a Keras model mapping features to projections, or None for the
            MLP `Dense(hidden, relu) -> Dense(projection_dim)` (the paper's projector is
            wider, 8192, with BatchNorm: pass it here).
        projection_dim: output size of the default head (> 0).
        projection_hidden_dim: hidden size of the default head (default: the encoder's
            feature size).
        redundancy_weight: lambda, the weight of the off-diagonal term (the paper: 5e-3
            for 8192 features; about 1 / projection_dim balances the two terms).
        augmenter: optional layer that makes a view from a batch (e.g. `SimCLRAugmentation`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the projection head is not a Keras
            layer, `projection_dim` is not positive or `redundancy_weight` is negative.

    Reference:
        Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via
        Redundancy Reduction", ICML 2021.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.BarlowTwins(encoder, projection_dim=4, redundancy_weight=0.25)
    >>> model.compile(optimizer="adam")
    >>> rng = np.random.default_rng(0)
    >>> views = (rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32"))
    >>> sorted(model.fit(views, batch_size=8, epochs=1, verbose=0).history)
    ['loss', 'off_diagonal', 'on_diagonal']
    >>> tuple(model(np.ones((2, 4))).shape)  # the representation h = f(x)
    (2, 8)
    """

    loss_names = ("on_diagonal", "off_diagonal")

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=128,
        projection_hidden_dim=None,
        redundancy_weight=5e-3,
        augmenter=None,
        **kwargs,
    ):
        super().__init__(encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs)
        self.redundancy_weight = validation.check_non_negative_float("redundancy_weight", redundancy_weight)
        self.build(tuple(encoder.inputs[0].shape))

    def loss_terms(self, z1, z2):
        """The loss and its terms on the (global) batch of the two views' projections.

        Args:
            z1: `(N, projection_dim)` float32 projections of the first views.
            z2: the same for the second views.

        Returns:
            `{"loss": ..., "on_diagonal": ..., "off_diagonal": ...}`
            scalar tensors (the terms before their weights).
        """
        on_diagonal, off_diagonal = barlow_twins_terms(z1, z2)
        loss = on_diagonal + self.redundancy_weight * off_diagonal
        return {"loss": loss, "on_diagonal": on_diagonal, "off_diagonal": off_diagonal}

    def get_config(self):
        config = super().get_config()
        config["redundancy_weight"] = self.redundancy_weight
        return config
