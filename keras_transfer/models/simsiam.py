"""SimSiam: simple Siamese representation learning with a stop-gradient (Chen & He, 2021)."""

import keras

from keras_transfer.losses.simsiam_loss import simsiam_terms
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._siamese import PredictivePretext


@keras.saving.register_keras_serializable(package="keras_transfer")
class SimSiam(PredictivePretext):
    """SimSiam: encoder f, projector g, predictor h; each view predicts the other's projection.

    Trains like `SimCLR` (`fit` on pairs of views from `keras_transfer.augment.simclr_dataset`,
    or on plain batches with `augmenter=`), with no negatives and no momentum encoder:
    `z = g(f(view))`, `p = h(z)` for each view, and `keras_transfer.losses.simsiam_loss`
    `D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2` with `D = -cos`. One set of
    weights; the stop-gradient is what prevents collapse. Under `tf.distribute` the loss
    is the global-batch mean, and the default heads built in the strategy's scope use
    synchronized BatchNorm (global-batch statistics, the paper's SyncBN), so a step on R
    replicas equals a step on one device (an encoder's own BatchNorm stays per replica
    unless built with `synchronized=True`).

    `call(x)` (so `predict`, `export`) returns the encoder's representation `h = f(x)`.
    Metrics: `loss` (-1 at best) and `projection_std`, the per-dimension standard
    deviation of the normalised projections (about `1 / sqrt(projection_dim)` when
    healthy, 0 when collapsed; per replica batch, averaged); NaN for a step on non-finite
    views or one that leaves a weight non-finite.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        projection_head: Keras model mapping features to projections, or None for
            `Dense(hidden) -> BatchNorm -> ReLU -> Dense(projection_dim) -> BatchNorm`
            (the paper's CIFAR projector; its ImageNet one has 3 layers of 2048, BatchNorm
            after each: pass it here). The output BatchNorm matters: on the digits
            benchmark's validation split SimSiam without it fell below random init.
        projection_dim: output size of the default projector (> 0; 2048 in the paper).
        projection_hidden_dim: hidden size of the default projector (default: the
            encoder's feature size).
        prediction_head: Keras model mapping projections to projections, or None for
            `Dense(hidden) -> BatchNorm -> ReLU -> Dense(projection size)`.
        prediction_hidden_dim: hidden size of the default predictor (> 0; default the
            paper's bottleneck, a quarter of the projection size: 512 for 2048).
        augmenter: optional layer that makes a view from a batch (e.g. `SimCLRAugmentation`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, a head is not a Keras layer, or
            `projection_dim`, `projection_hidden_dim` or `prediction_hidden_dim` is not positive.

    Reference:
        Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.SimSiam(encoder, projection_dim=8)
    >>> model.prediction_head.layers[1].units  # the bottleneck: 8 // 4
    2
    >>> model.compile(optimizer="adam")
    >>> rng = np.random.default_rng(0)
    >>> views = (rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32"))
    >>> sorted(model.fit(views, batch_size=8, epochs=1, verbose=0).history)
    ['loss', 'projection_std']
    >>> tuple(model(np.ones((2, 4))).shape)  # the encoder's representation f(x)
    (2, 8)
    """

    default_bottleneck = True
    projection_output_bn = True

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=128,
        projection_hidden_dim=None,
        prediction_head=None,
        prediction_hidden_dim=None,
        augmenter=None,
        **kwargs,
    ):
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
        self.build(tuple(encoder.inputs[0].shape))

    def step_loss(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "SimSiam")
        # Each view through the networks on its own (BatchNorm statistics per view), as the paper's code.
        z1, p1 = self.branch(view_1, training)
        z2, p2 = self.branch(view_2, training)
        return self.loss_shares(simsiam_terms(p1, p2, z1, z2), (z1, z2), (view_1, view_2))
