"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, 2022)."""

import keras

from keras_transfer.losses.vicreg import vicreg_terms
from keras_transfer.models._contrastive_utils import NonContrastivePretext
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class VICReg(NonContrastivePretext):
    """VICReg: encoder f, expander g, invariance between the views plus variance and covariance terms.

    Trains like `SimCLR` (`fit` on pairs of views from `keras_transfer.augment.simclr_dataset`,
    or on plain batches with `augmenter=`), with no negatives: each view goes through the
    networks on its own and `keras_transfer.losses.vicreg_loss` pulls the two views'
    embeddings together while a hinge keeps every feature's standard deviation at 1 and
    a penalty decorrelates the features (no collapse without negatives or momentum
    encoders). Under `tf.distribute` the statistics span the global batch, so a step on R
    replicas equals a step on one device.

    `call(x)` (so `predict`, `export`) returns the encoder's representation `h = f(x)`.
    Metrics: `loss`, `invariance`, `variance`, `covariance` (the terms before their
    weights); NaN for a step on non-finite views or one that leaves a weight non-finite.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        projection_head: the expander, a Keras model mapping features to embeddings, or
            None for the MLP `Dense(hidden, relu) -> Dense(projection_dim)` (the paper's
            is 8192-8192-8192 with BatchNorm: pass it here).
        projection_dim: output size of the default expander (> 0).
        projection_hidden_dim: hidden size of the default expander (default: the
            encoder's feature size).
        invariance_weight: lambda (25 in the paper).
        variance_weight: mu (25).
        covariance_weight: nu (1).
        augmenter: optional layer that makes a view from a batch (e.g. `SimCLRAugmentation`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the expander is not a Keras layer,
            `projection_dim` is not positive or a weight is negative.

    Reference:
        Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
        Self-Supervised Learning", ICLR 2022.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.VICReg(encoder, projection_dim=4)
    >>> model.compile(optimizer="adam")
    >>> rng = np.random.default_rng(0)
    >>> views = (rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32"))
    >>> sorted(model.fit(views, batch_size=8, epochs=1, verbose=0).history)
    ['covariance', 'invariance', 'loss', 'variance']
    """

    loss_names = ("invariance", "variance", "covariance")

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=128,
        projection_hidden_dim=None,
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
        augmenter=None,
        **kwargs,
    ):
        super().__init__(encoder, projection_head, projection_dim, projection_hidden_dim, augmenter, **kwargs)
        self.invariance_weight = validation.check_non_negative_float("invariance_weight", invariance_weight)
        self.variance_weight = validation.check_non_negative_float("variance_weight", variance_weight)
        self.covariance_weight = validation.check_non_negative_float("covariance_weight", covariance_weight)
        self.build(tuple(encoder.inputs[0].shape))

    def loss_terms(self, z1, z2):
        """The loss and its terms on the (global) batch of the two views' projections.

        Args:
            z1: `(N, projection_dim)` float32 projections of the first views.
            z2: the same for the second views.

        Returns:
            `{"loss": ..., "invariance": ..., "variance": ..., "covariance": ...}`
            scalar tensors (the terms before their weights).
        """
        invariance, variance, covariance = vicreg_terms(z1, z2)
        loss = (
            self.invariance_weight * invariance + self.variance_weight * variance + self.covariance_weight * covariance
        )
        return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "invariance_weight": self.invariance_weight,
                "variance_weight": self.variance_weight,
                "covariance_weight": self.covariance_weight,
            }
        )
        return config
