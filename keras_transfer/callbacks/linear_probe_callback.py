"""`LinearProbeCallback`: linear-probe accuracy of the encoder every N epochs of pre-training."""

import keras

from keras_transfer.utils.validation import check_positive_int


class LinearProbeCallback(keras.callbacks.Callback):  # holds data: not serialisable, like Keras callbacks
    """Reports the frozen-encoder linear-probe accuracy during self-supervised `fit`.

    Every `every` epochs (and after the last one) it runs
    `keras_transfer.recipes.linear_evaluation(model.encoder, ...)` on the given labeled
    data and writes `linear_probe_accuracy` into the epoch logs (so it appears in
    `History` and progress bars); `self.history` keeps `(epoch, accuracy)` pairs.

    Args:
        x_train, y_train: labeled data the probe is fitted on.
        x_test, y_test: held-out data whose accuracy is reported.
        every: evaluate every this many epochs (>= 1).
        C: inverse L2 strength of the probe (a fixed value is fast; "auto" cross-validates).
        num_classes: default `max(y_train) + 1`.
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
