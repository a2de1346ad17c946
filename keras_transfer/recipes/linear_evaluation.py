"""Linear evaluation of a (self-supervised) encoder: frozen features, convex linear probe."""

import time

import keras
import numpy as np

from keras_transfer.recipes.classifier import HEAD_LAYER_NAME
from keras_transfer.recipes.classifier import get_head
from keras_transfer.recipes.linear_probe import extract_features
from keras_transfer.recipes.linear_probe import linear_probe
from keras_transfer.utils import validation


def _encoder_of(model):
    """The encoder of SimCLR / MoCo / pretext models, or the model itself."""
    return getattr(model, "encoder", model)


def linear_probe_model(encoder, num_classes):
    """`encoder` (in inference mode) followed by a softmax Dense named "head".

    The encoder is called with `training=False` and shared, not copied; its
    `trainable` flag is left as it is.

    Args:
        encoder: a built functional or Sequential encoder mapping inputs to
            `(batch, features)`, or a model with an `.encoder` (SimCLR, MoCo,
            pretext models).
        num_classes: the number of classes of the head.

    Returns:
        A `keras.Model` named "linear_probe".

    Raises:
        ValueError: if `encoder` is not a built functional or Sequential model, or
            does not output `(batch, features)` vectors.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> probe = keras_transfer.recipes.linear_probe_model(encoder, num_classes=3)
    >>> probe.name, probe.output_shape
    ('linear_probe', (None, 3))
    """
    encoder = _encoder_of(encoder)
    if not getattr(encoder, "inputs", None):
        raise ValueError(
            "`encoder` must be a built functional or Sequential model (or a model with an "
            f"`.encoder`). Received: {type(encoder).__name__}"
        )
    inputs = keras.Input(tuple(encoder.inputs[0].shape[1:]))
    features = encoder(inputs, training=False)
    if len(features.shape) != 2:
        raise ValueError(
            f"`encoder` must output (batch, features) vectors. Received: output shape {tuple(features.shape)}"
        )
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_LAYER_NAME)(features)
    # The encoder is shared, not copied, and its `trainable` flag is left alone (it may still
    # be pre-training); the convex probe only ever fits the head.
    return keras.Model(inputs, outputs, name="linear_probe")


def linear_evaluation(encoder, x_train, y_train, x_test, y_test, num_classes=None, C="auto", batch_size=256):
    """Linear-probe accuracy of a frozen encoder (the standard self-supervised evaluation).

    Features are extracted once in inference mode, in compiled batches of `batch_size`
    (memory bounded by one batch), and a multinomial logistic regression is solved to
    convergence (`keras_transfer.recipes.linear_probe`, L-BFGS), so the number measures
    the representation, not an SGD schedule.

    Args:
        encoder: a Keras encoder mapping inputs to `(batch, features)`, or a model with
            an `.encoder` (SimCLR, MoCo, pretext models). It is not modified.
        x_train: inputs of the probe's training data.
        y_train: integer labels of `x_train`.
        x_test: held-out inputs for the reported accuracy.
        y_test: integer labels of `x_test`.
        num_classes: default `max(y_train) + 1`.
        C: inverse L2 strength of the probe, or "auto" (cross-validated).
        batch_size: examples per compiled extraction call.

    Returns:
        dict with `test_accuracy`, `train_accuracy`, `C`, `num_features`, `seconds`
        and `model` (the probe: the encoder in inference mode + the fitted head).

    Raises:
        ValueError: if `x_train` or `x_test` is empty, inputs and labels differ in
            length, `num_classes` is below 2, labels are not in
            `[0, num_classes)`, or as `linear_probe_model`.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020 (linear evaluation protocol).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> result = keras_transfer.recipes.linear_evaluation(
    ...     encoder, x[:30], y[:30], x[30:], y[30:], C=1.0)
    >>> result["num_features"], result["test_accuracy"] >= 0.8
    (8, True)
    """
    start = time.perf_counter()
    validation.check_not_empty(x_train, "x_train")
    validation.check_not_empty(x_test, "x_test")
    y_train = np.asarray(y_train)
    if num_classes is None:
        num_classes = int(np.max(y_train)) + 1 if y_train.size else 0
    num_classes = validation.check_int_at_least("num_classes", num_classes, 2)
    y_train = validation.check_labels(y_train, num_classes, "y_train")
    y_test = validation.check_labels(y_test, num_classes, "y_test")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            "`x_train`/`y_train` and `x_test`/`y_test` must have the same lengths. Received: "
            f"{len(x_train)}/{len(y_train)} and {len(x_test)}/{len(y_test)}"
        )
    model = linear_probe_model(encoder, num_classes)
    result = linear_probe(model, np.asarray(x_train), y_train, C=C, batch_size=batch_size)
    # The test features through the extractor the probe compiled (no `predict`: a new
    # model per call, e.g. every epoch of `LinearProbeCallback`, would log retracing warnings).
    features = extract_features(model, np.asarray(x_test), batch_size=batch_size)
    probabilities = keras.ops.convert_to_numpy(get_head(model)(features))
    test_accuracy = float(np.mean(np.argmax(probabilities, axis=1) == y_test))
    return {
        "test_accuracy": test_accuracy,
        "train_accuracy": result["train_accuracy"],
        "C": result["C"],
        "num_features": result["num_features"],
        "seconds": time.perf_counter() - start,
        "model": model,
    }
