"""The linear probe as the convex problem it is (seed 002): features once, a convex solver, the head installed.

With the backbone frozen, training the head is multinomial logistic regression on
fixed features. Extracting the features once and solving that problem with L-BFGS
(scikit-learn) reaches the optimum that epochs of SGD through the frozen network
approach, in a fraction of the time (see BENCHMARKS.md).
"""

import hashlib
import os
import time

import keras
import numpy as np

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.recipes.classifier import feature_extractor
from keras_transfer.recipes.classifier import get_head
from keras_transfer.utils import validation

_MEMORY_CACHE = {}
CANDIDATE_C = (0.01, 0.1, 1.0, 10.0)
EAGER_LIMIT = 4096


def _fingerprint(model, x):
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(str(x.shape).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def extract_features(model, x, batch_size=64, cache_dir=None, use_cache=True):
    """Pooled features that feed the head of a `build_classifier` model (or any model's output).

    Results are cached in memory (and in `cache_dir` as .npy when given), keyed by a hash of
    the inputs and of the extractor's weights, so a probe, a C search and a benchmark reuse them.
    """
    validation.check_not_empty(x, "x")
    x = validation.check_finite(np.asarray(x), "x")
    try:
        extractor = feature_extractor(model)
    except ValueError:
        extractor = model
    key = _fingerprint(extractor, x) if use_cache else None
    if key and key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = os.path.join(cache_dir, f"features_{key}.npy") if (cache_dir and key) else None
    if path and os.path.exists(path):
        features = np.load(path)
    else:
        if len(x) <= EAGER_LIMIT:  # no tracing: faster for the small sets probes usually see
            chunks = [
                keras.ops.convert_to_numpy(extractor([x[i : i + 256]], training=False))
                for i in range(0, len(x), 256)
            ]
            features = np.concatenate(chunks).astype("float32")
        else:
            features = np.asarray(extractor.predict(x, batch_size=batch_size, verbose=0), dtype="float32")
        features = features.reshape(len(x), -1)
        if path:
            os.makedirs(cache_dir, exist_ok=True)
            np.save(path, features)
    if key:
        if len(_MEMORY_CACHE) > 16:
            _MEMORY_CACHE.pop(next(iter(_MEMORY_CACHE)))
        _MEMORY_CACHE[key] = features
    return features


def fit_logistic_regression(features, y, num_classes, C="auto", max_iter=2000, seed=0):
    """Multinomial logistic regression with L-BFGS on standardised features.

    Returns (kernel, bias, C) expressed on the raw (unstandardised) features, so that
    `features @ kernel + bias` gives the logits. `C="auto"` picks the inverse L2 strength
    from `CANDIDATE_C` by stratified 3-fold cross-validation.
    """
    from threadpoolctl import threadpool_limits

    # One BLAS thread: L-BFGS on probe-sized problems is 5-10x slower with threads that
    # spin against TensorFlow's own pool (measured here, see BENCHMARKS.md).
    with threadpool_limits(1):
        return _fit_logistic_regression(features, y, num_classes, C, max_iter, seed)


def _fit_logistic_regression(features, y, num_classes, C, max_iter, seed):
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    z = (features - mean) / std
    if C == "auto":
        C = _cross_validate_C(z, y, num_classes, max_iter, seed)
    C = validation.check_positive_float("C", C)
    # tol tighter than sklearn's 1e-4: the installed head is the optimum (probabilities within ~1e-4),
    # not a stop ~1e-2 away from it; it costs a few more L-BFGS iterations.
    clf = LogisticRegression(C=C, max_iter=max_iter, tol=1e-6)
    clf.fit(z, y)
    coef = np.zeros((num_classes, z.shape[1]), dtype="float64")
    intercept = np.zeros((num_classes,), dtype="float64")
    if clf.coef_.shape[0] == 1:  # binary: sklearn keeps one logit; softmax([0, z]) = sigmoid(z)
        coef[clf.classes_[1]] = clf.coef_[0]
        intercept[clf.classes_[1]] = clf.intercept_[0]
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
    kernel = (coef / std[None, :]).T
    bias = intercept - (coef * (mean / std)[None, :]).sum(axis=1)
    return kernel.astype("float32"), bias.astype("float32"), C


def _cross_validate_C(z, y, num_classes, max_iter, seed):
    """Stratified 3-fold choice of C; each fold walks the C path with warm starts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=num_classes)
    folds = int(min(3, counts[counts > 0].min()))
    if folds < 2:
        return 1.0
    scores = np.zeros(len(CANDIDATE_C))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y):
        clf = LogisticRegression(max_iter=max_iter, tol=1e-3, warm_start=True)
        for i, c in enumerate(CANDIDATE_C):
            clf.set_params(C=c)
            clf.fit(z[train], y[train])
            scores[i] += clf.score(z[test], y[test])
    best = int(np.argmax(scores))  # ties: the strongest regularisation, first in CANDIDATE_C
    return CANDIDATE_C[best]


def linear_probe(
    model, data, y=None, C="auto", batch_size=64, cache_dir=None, use_cache=True, max_iter=2000, seed=0
):
    """Fits the head of a `build_classifier` model as a convex problem and installs it.

    Args:
        model: a model with a Dense named "head" (its backbone is used frozen, as is).
        data: images `x` (with `y`), or an (x, y) tuple, or a finite tf.data.Dataset of (x, y).
        C: inverse L2 strength, or "auto" (cross-validated).
        use_cache: reuse features extracted earlier for the same inputs and weights.

    Returns:
        A dict with the chosen `C`, training accuracy, feature size and seconds spent.
    """
    start = time.perf_counter()
    x, y = as_numpy_xy((data, y) if y is not None else data, "data")
    head = get_head(model)
    num_classes = head.units
    y = validation.check_labels(y, num_classes, "y")
    features = extract_features(model, x, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache)
    kernel, bias, C = fit_logistic_regression(features, y, num_classes, C=C, max_iter=max_iter, seed=seed)
    head.kernel.assign(kernel)
    head.bias.assign(bias)
    train_accuracy = float(np.mean(np.argmax(features @ kernel + bias, axis=1) == y))
    return {
        "C": C,
        "train_accuracy": train_accuracy,
        "num_features": int(features.shape[1]),
        "seconds": time.perf_counter() - start,
    }
