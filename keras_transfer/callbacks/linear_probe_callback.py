"""`LinearProbeCallback`: linear-probe accuracy of the encoder every N epochs of pre-training."""

import keras

from keras_transfer.utils.validation import check_positive_int


class LinearProbeCallback(keras.callbacks.Callback):  # holds data: not serialisable, like Keras callbacks
    """Reports the frozen-encoder linear-probe accuracy during self-supervised `fit`.

    Every `every` epochs (and after the last one) it runs
    `keras_transfer.recipes.linear_evaluation` on the model being trained (its
    `.encoder` when it has one, as SimCLR, MoCo and the pretext models do) with
    the given labeled data, and writes `linear_probe_accuracy` into the epoch logs
    (so it appears in `History` and progress bars); `self.history` keeps
    `(epoch, accuracy)` pairs. The linear probe is the standard evaluation of a
    self-supervised representation.

    Args:
        x_train: inputs the probe is fitted on.
        y_train: integer labels of `x_train`.
        x_test: held-out inputs whose accuracy is reported.
        y_test: integer labels of `x_test`.
        every: evaluate every this many epochs (>= 1).
        C: inverse L2 strength of the probe (a fixed value is fast; "auto"
            cross-validates).
        num_classes: number of classes, default `max(y_train) + 1`.
        verbose: print the accuracy after each evaluation.

    Raises:
        ValueError: if `every` is not a positive int.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020 (linear evaluation protocol).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> encoder.compile(optimizer="sgd", loss="mse")
    >>> probe = keras_transfer.callbacks.LinearProbeCallback(x[:30], y[:30], x[30:], y[30:])
    >>> history = encoder.fit(x, np.zeros((40, 3)), epochs=1, callbacks=[probe], verbose=0)
    >>> sorted(history.history)
    ['linear_probe_accuracy', 'loss']
    >>> [epoch for epoch, _ in probe.history]
    [0]
    """

    def __init__(self, x_train, y_train, x_test, y_test, every=1, C=1.0, num_classes=None, verbose=0):
        super().__init__()
        self.num_classes = num_classes
        self.data = (x_train, y_train, x_test, y_test)
        self.every = check_positive_int("every", every)
        self.C = C
        self.verbose = verbose
        self.history = []

    def _evaluate(self, epoch, logs):
        from keras_transfer.recipes.linear_evaluation import linear_evaluation

        result = linear_evaluation(self.model, *self.data, num_classes=self.num_classes, C=self.C)
        accuracy = result["test_accuracy"]
        self.history.append((epoch, accuracy))
        if logs is not None:
            logs["linear_probe_accuracy"] = accuracy
        if self.verbose:
            print(f"\nepoch {epoch + 1}: linear_probe_accuracy={accuracy:.4f}")

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs") if self.params else None

    def on_epoch_end(self, epoch, logs=None):
        last = self._epochs is not None and epoch + 1 == self._epochs
        if (epoch + 1) % self.every == 0 or last:
            self._evaluate(epoch, logs)
