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
    """`encoder` (frozen, inference mode) followed by a softmax Dense named "head"."""
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
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_LAYER_NAME)(
        features
    )
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
        x_train, y_train: labeled data for the probe (integer labels).
        x_test, y_test: held-out data for the reported accuracy.
        num_classes: default `max(y_train) + 1`.
        C: inverse L2 strength of the probe, or "auto" (cross-validated).

    Returns:
        dict with `test_accuracy`, `train_accuracy`, `C`, `num_features`, `seconds`
        and `model` (the probe: frozen encoder + fitted head).
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
