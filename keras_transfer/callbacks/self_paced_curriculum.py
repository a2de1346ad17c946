"""`SelfPacedCurriculum`: re-sorts a curriculum by the model's own loss every few epochs."""

import keras
import numpy as np

from keras_transfer.datasets.curriculum_order import CurriculumOrder
from keras_transfer.recipes.curriculum_scoring import loss_difficulty
from keras_transfer.recipes.curriculum_scoring import per_example_loss
from keras_transfer.utils import validation


class SelfPacedCurriculum(keras.callbacks.Callback):  # holds data: not serialisable, like Keras callbacks
    """Self-paced learning: the curriculum order follows the loss of the model being trained.

    Every `every` epochs (and, with `rescore_at_start`, before the first one) it scores
    the training examples with the model's own per-example loss
    (`keras_transfer.recipes.loss_difficulty`) and re-sorts `order`, the
    `keras_transfer.datasets.CurriculumOrder` that a
    `keras_transfer.datasets.curriculum_dataset` samples from: the pacing function then
    admits the examples the current model finds easiest (Kumar et al.'s easy-first
    selection, with the pacing function in place of their loss threshold 1/K). A new
    order reaches training within the few batches already prefetched. The mean loss of
    each scoring is kept in `history` as `(epoch, mean loss)` pairs (epoch -1: before
    training).

    Args:
        order: the `CurriculumOrder` of the dataset being trained on.
        x: the training inputs, in the order the `CurriculumOrder` indexes.
        y: their targets.
        every: re-score every this many epochs (>= 1).
        loss: None (the compiled loss; cross-entropy for `SourceOnly`/`DANN`), a loss
            name, a `keras.losses.Loss` or a per-example function.
        rescore_at_start: score with the initial model before training, as self-paced
            learning does; False keeps the order `order` was built with (e.g. transfer
            scores) for the first `every` epochs.
        batch_size: examples per scoring call.

    Raises:
        ValueError: if `order` is not a `CurriculumOrder` of `len(x)` examples, `every`
            or `batch_size` is not a positive integer, or `rescore_at_start` is not a bool.

    Reference:
        Kumar, Packer & Koller, "Self-Paced Learning for Latent Variable Models",
        NeurIPS 2010; Hacohen & Weinshall, "On the Power of Curriculum Learning in
        Training Deep Networks", ICML 2019.

    Example:

    >>> x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> order = keras_transfer.datasets.CurriculumOrder(np.zeros(64))
    >>> pacing = keras_transfer.schedules.StepPacing(0.5, step_length=4, total_steps=8)
    >>> dataset = keras_transfer.datasets.curriculum_dataset(x, y, order, pacing, batch_size=8)
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> callback = keras_transfer.callbacks.SelfPacedCurriculum(order, x, y, every=1)
    >>> _ = model.fit(dataset, epochs=2, steps_per_epoch=4, callbacks=[callback], verbose=0)
    >>> [epoch for epoch, _ in callback.history], order.updates
    ([-1, 0, 1], 3)
    """

    def __init__(self, order, x, y, every=1, loss=None, rescore_at_start=True, batch_size=256):
        super().__init__()
        if not isinstance(order, CurriculumOrder):
            raise ValueError(
                "`order` must be the keras_transfer.datasets.CurriculumOrder the curriculum dataset reads. "
                f"Received: order={order!r}"
            )
        if len(x) != order.num_examples or len(y) != order.num_examples:
            raise ValueError(
                f"`x` and `y` must hold the {order.num_examples} examples that `order` sorts. Received: "
                f"len(x)={len(x)}, len(y)={len(y)}"
            )
        if not isinstance(rescore_at_start, bool):
            raise ValueError(
                f"`rescore_at_start` must be True or False. Received: rescore_at_start={rescore_at_start!r}"
            )
        self.order = order
        self.x, self.y = x, y
        self.every = validation.check_positive_int("every", every)
        self.loss = loss
        self.rescore_at_start = rescore_at_start
        self.batch_size = validation.check_positive_int("batch_size", batch_size)
        self.history = []

    def rescore(self, epoch=-1):
        """Scores the examples with the current model and re-sorts `order`.

        Args:
            epoch: the epoch just finished (-1 before training), for `history`.

        Returns:
            The float64 per-example losses.
        """
        scores = loss_difficulty(self.model, self.x, self.y, loss=self._loss_fn, batch_size=self.batch_size)
        self.order.update(scores)
        self.history.append((epoch, float(np.mean(scores))))
        return scores

    def on_train_begin(self, logs=None):
        self._loss_fn = per_example_loss(self.model, self.loss)
        if self.rescore_at_start:
            self.rescore(-1)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.rescore(epoch)
