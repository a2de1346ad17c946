"""Difficulty scores for curriculum learning: a model's per-example loss, and transfer scoring."""

import keras
import numpy as np

from keras_transfer.datasets.curriculum_order import check_difficulty
from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.recipes.linear_probe import extract_features
from keras_transfer.recipes.linear_probe import fit_logistic_regression
from keras_transfer.recipes.linear_probe import predict_in_batches
from keras_transfer.utils import validation


def per_example_loss(model, loss=None):
    """The unreduced loss `fn(y_true, y_pred) -> one value per example` that scores `model`.

    `loss` when given (a `keras.losses.Loss` is rebuilt without reduction); else the
    loss `model` was compiled with; else, for a model with a `from_logits` attribute
    (`SourceOnly`, `DANN`, `DeepCORAL`), sparse categorical cross-entropy.

    Args:
        model: a Keras model.
        loss: None, a loss name, a `keras.losses.Loss`, or a function returning one
            value per example.

    Returns:
        A function of `(y_true, y_pred)`.

    Raises:
        ValueError: if no loss is given and none can be found on `model`.
    """
    if loss is None:
        loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    if loss is None and isinstance(getattr(model, "from_logits", None), bool):
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=model.from_logits)
    if loss is None:
        raise ValueError(
            "`loss` must be given when the model has no compiled loss. Received: loss=None for model "
            f"{getattr(model, 'name', model)!r}. Pass e.g. "
            "loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)."
        )
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        loss = type(loss).from_config({**loss.get_config(), "reduction": None})
    if not callable(loss):
        raise ValueError(f"`loss` must be a Keras loss or a function. Received: loss={loss!r}")
    return loss


def loss_difficulty(model, x, y, loss=None, batch_size=256):
    """Per-example loss of `model` on `(x, y)`: a difficulty score (lower is easier).

    With a pretrained scoring model this is transfer scoring by loss; with the model
    being trained it is the self-paced score (Kumar et al.: an example is easy when the
    current model's loss on it is small; `keras_transfer.callbacks.SelfPacedCurriculum`
    re-scores with it during `fit`). The model runs in inference mode, `batch_size`
    examples at a time.

    Args:
        model: a single-input Keras model with one output (a custom-step model's `call`).
        x: inputs, an array of `n` examples.
        y: targets, `n` rows.
        loss: None (the compiled loss, or cross-entropy for models with a
            `from_logits` attribute), a loss name, a `keras.losses.Loss` (used
            unreduced) or a function returning one value per example.
        batch_size: examples per compiled call.

    Returns:
        A float64 array of `n` losses.

    Raises:
        ValueError: if `x` is empty, `x` and `y` differ in length, no loss can be
            found, or a loss is not finite (the model diverged or the data holds NaN).

    Reference:
        Kumar, Packer & Koller, "Self-Paced Learning for Latent Variable Models",
        NeurIPS 2010.

    Example:

    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
    >>> model.set_weights([np.array([[-1.0, 1.0]]), np.zeros(2)])
    >>> x, y = np.array([[2.0], [0.1], [-2.0]]), np.array([1, 1, 1])
    >>> scores = keras_transfer.recipes.loss_difficulty(
    ...     model, x, y, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> keras_transfer.datasets.difficulty_order(scores)
    array([0, 1, 2])
    """
    x, y = as_numpy_xy((x, y), "x")
    loss_fn = per_example_loss(model, loss)
    predictions = predict_in_batches(model, x, batch_size=batch_size)
    values = np.asarray(keras.ops.convert_to_numpy(loss_fn(y, predictions)), dtype="float64").reshape(len(x), -1)
    values = values.mean(axis=1)
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(
            f"`model` must give a finite loss on every example. Received: {bad} NaN or infinite losses of "
            f"{len(values)}. Check the data for NaN and the model for divergence."
        )
    return values


def transfer_difficulty(model, x, y, num_classes=None, C=1.0, folds=None, batch_size=64, seed=0):
    """Hacohen & Weinshall's transfer scoring: the loss of a classifier fitted on pretrained features.

    The features of `x` under a pretrained `model` (the input of its head for a
    `build_classifier` model, else its flattened output) are fitted by multinomial
    logistic regression (`fit_logistic_regression`, on the task's own labels `y`);
    an example's difficulty is the classifier's cross-entropy `-log p(y | x)`: examples
    the classifier gives their label with high confidence come first. The paper fits an
    SVM and uses its confidence; the order is the same as by the probability of the
    correct class. With `folds`, each example is scored by a classifier fitted
    without it (stratified folds), so a mislabelled example cannot look easy by
    having been fitted.

    Args:
        model: the pretrained scoring network.
        x: inputs, an array of `n` examples.
        y: integer labels of the task to order.
        num_classes: the number of classes, default `max(y) + 1` (at least 2).
        C: inverse L2 strength of the classifier, a positive number or "auto".
        folds: None (score the examples the classifier was fitted on, as the paper) or
            the number of cross-fitting folds (>= 2).
        batch_size: images per compiled feature-extraction call.
        seed: seed of the folds and of `C="auto"`'s cross-validation.

    Returns:
        A float64 array of `n` scores, lower is easier.

    Raises:
        ValueError: if the labels are not class ids, `folds` is not None or an integer
            >= 2 that every class can fill, or as `extract_features` and
            `fit_logistic_regression`.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2, transfer scoring).

    Example:

    >>> x = np.array([[-3.0], [-1.0], [-0.1], [0.1], [1.0], [3.0]], "float32")
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> features = keras.Sequential([keras.Input((1,)), keras.layers.Identity()])
    >>> scores = keras_transfer.recipes.transfer_difficulty(features, x, y, C=10.0)
    >>> [int(i) for i in keras_transfer.datasets.difficulty_order(scores)[:2]]
    [0, 5]
    """
    x, y = as_numpy_xy((x, y), "x")
    if num_classes is None and np.issubdtype(y.dtype, np.number):
        num_classes = max(int(np.max(y)) + 1, 2)
    elif num_classes is None:
        num_classes = 2  # check_labels then reports the labels that are not class ids
    num_classes = validation.check_int_at_least("num_classes", num_classes, 2)
    y = validation.check_labels(y, num_classes, "y")
    features = extract_features(model, x, batch_size=batch_size)
    if folds is None:
        return _cross_entropy(features, y, features, y, num_classes, C, seed)
    folds = validation.check_int_at_least("folds", folds, 2, "Use None to score on the fitted examples.")
    smallest = int(np.min(np.bincount(y)[np.unique(y)]))
    if folds > smallest:
        raise ValueError(
            f"`folds` must be at most the size of the smallest class ({smallest}). Received: folds={folds}. "
            "Lower `folds`, or use None."
        )
    from sklearn.model_selection import StratifiedKFold

    scores = np.empty(len(y), dtype="float64")
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y):
        scores[held_out] = _cross_entropy(
            features[train], y[train], features[held_out], y[held_out], num_classes, C, seed
        )
    return check_difficulty(scores, len(y))


def _cross_entropy(train_features, train_y, features, y, num_classes, C, seed):
    kernel, bias, _ = fit_logistic_regression(train_features, train_y, num_classes, C=C, seed=seed)
    logits = np.asarray(features, "float64") @ kernel.astype("float64") + bias.astype("float64")
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(y)), y]
