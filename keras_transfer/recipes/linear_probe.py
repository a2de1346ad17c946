"""The linear probe as the convex problem it is: features once, a convex solver, the head installed.

With the backbone frozen, training the head is multinomial logistic regression on
fixed features. Extracting the features once and solving that problem with L-BFGS
(scikit-learn) reaches the optimum that epochs of SGD through the frozen network
approach, in a fraction of the time (see BENCHMARKS.md). The features are extracted by
one compiled function per model, a batch at a time, so memory does not grow with the
number of images (benchmarks/finetune_memory.py).
"""

import hashlib
import os
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.recipes.classifier import feature_extractor
from keras_transfer.recipes.classifier import get_head
from keras_transfer.utils import validation

_MEMORY_CACHE = {}
CANDIDATE_C = (0.01, 0.1, 1.0, 10.0)
# L-BFGS stops when every gradient entry of scikit-learn's objective (mean cross-entropy plus
# ||W||^2 / (2 C n)) is below this: tighter than sklearn's 1e-4, so the installed head is the
# optimum rather than a stop ~1e-2 away from it; it costs a few more iterations.
SOLVER_TOL = 1e-6
# Rows hashed / checked for finiteness at a time: the scans never hold more than this many images' bytes.
_SCAN_ROWS = 256


class _InferenceCall:
    """Calls a model on one batch in inference mode (wrapped in one `tf.function` per model).

    A callable object rather than a closure: `tf.function` counts retracing per Python
    function, so closures made for successive models (as `predict` makes) share one
    counter and log "5 out of the last 5 calls ... triggered tf.function retracing" when
    a loop builds new models; each object has its own counter.
    """

    def __init__(self, target, owner):
        # A feature extractor built from `owner` holds `owner`'s layers, not `owner`; when
        # the target is `owner` itself it is held weakly, so the cache entry can go with it.
        self._target = None if target is owner else target
        self._owner = weakref.ref(owner)

    @property
    def target(self):
        return self._target if self._target is not None else self._owner()

    def __call__(self, x):
        return self.target(x, training=False)


_COMPILED = weakref.WeakKeyDictionary()  # model -> {"features" | "outputs": (call, tf.function, dtype)}


def _compiled(model, what):
    """`model`'s features (the head's input) or outputs, compiled once and reused while `model` lives."""
    entries = _COMPILED.setdefault(model, {})
    if what not in entries:
        target = model
        if what == "features":
            try:
                target = feature_extractor(model)
            except ValueError:
                pass
        call = _InferenceCall(target, model)
        inputs = getattr(target, "inputs", None)
        if inputs and len(inputs) == 1:
            dtype = keras.backend.standardize_dtype(inputs[0].dtype)
            spec = tf.TensorSpec((None,) + tuple(inputs[0].shape[1:]), dtype)
            compiled = tf.function(call, input_signature=[spec])  # one trace for every batch size
        else:
            dtype = None
            compiled = tf.function(call, reduce_retracing=True)
        entries[what] = (call, compiled, dtype)
    return entries[what]


def _to_numpy(outputs, flatten):
    values = np.asarray(keras.ops.convert_to_numpy(outputs), dtype="float32")
    return values.reshape(len(values), -1) if flatten else values


def _scan(x, extractor, want_key):
    """One pass over `x` in slices: raises on non-finite values, returns the cache key (or None).

    No copy of `x`: finiteness is checked and the bytes hashed `_SCAN_ROWS` rows at a time.
    """
    digest = hashlib.sha1() if want_key else None
    floating = np.issubdtype(x.dtype, np.floating)
    for i in range(0, len(x), _SCAN_ROWS):
        part = np.ascontiguousarray(x[i : i + _SCAN_ROWS])
        if floating and not np.isfinite(part).all():
            validation.check_finite(x, "x")  # the error, with the count over the whole array
        if digest is not None:
            digest.update(memoryview(part).cast("B"))
    if digest is None:
        return None
    digest.update(f"{x.shape}{x.dtype}".encode())
    for weight in extractor.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _run_arrays(compiled, dtype, x, batch_size, flatten=True):
    """Outputs on array `x`, one compiled batch at a time, into one preallocated array."""
    results = None
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        batch = np.asarray(batch, dtype=dtype) if dtype else batch
        out = _to_numpy(compiled(tf.convert_to_tensor(batch)), flatten)
        if results is None:
            results = np.empty((len(x),) + out.shape[1:], dtype="float32")
        results[i : i + len(out)] = out
    return results


def _run_dataset(compiled, dtype, dataset, name, with_labels):
    """Features (and labels) of a finite batched dataset, read once, one batch in memory at a time."""
    chunks, labels = [], []
    for element in dataset:
        is_tuple = isinstance(element, (tuple, list))
        if with_labels and (not is_tuple or len(element) < 2):
            raise ValueError(
                f"`{name}` must yield (x, y) batches. Received a dataset with element spec {dataset.element_spec}"
            )
        x = element[0] if is_tuple else element
        if isinstance(x, dict):  # named inputs (e.g. keras-hub's token_ids / padding_mask): as they come
            pass
        elif x.dtype.is_floating:
            validation.check_finite(x.numpy(), "x")
        if dtype and not isinstance(x, dict):
            x = tf.cast(x, dtype)
        chunks.append(_to_numpy(compiled(x), flatten=True))
        if with_labels:
            labels.append(np.asarray(element[1]))
    if not chunks:
        raise ValueError(f"`{name}` must contain at least one example. Received: an empty dataset.")
    features = np.concatenate(chunks)
    return (features, np.concatenate(labels)) if with_labels else features


def dict_batches(x, y, batch_size, name="x"):
    """A batched dataset of a dict of equal-length arrays (named inputs, e.g. token ids and a padding mask)."""
    x = {key: np.asarray(value) for key, value in x.items()}
    lengths = {key: len(value) for key, value in x.items()}
    if y is not None:
        lengths["labels"] = len(y)
    if not x or len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"`{name}` must be a non-empty dict of arrays of one length. Received lengths: {lengths}")
    return tf.data.Dataset.from_tensor_slices(x if y is None else (x, np.asarray(y))).batch(batch_size)


def split_dict_inputs(data, y):
    """`(x, y)` when `data` (or `data[0]` of an `(x, y)` pair) is a dict of named inputs; else None."""
    if isinstance(data, dict):
        return data, y
    if y is None and isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], dict):
        return data[0], data[1]
    return None


def extract_features(model, x, batch_size=64, cache_dir=None, use_cache=True):
    """Pooled features that feed the head of a `build_classifier` model (or any model's output).

    The extractor runs as one compiled `tf.function` per model, reused across calls, on
    `batch_size` images at a time: memory is bounded by one batch (plus the features),
    whatever the number of images. Array results are cached in memory (and in
    `cache_dir` as .npy when given), keyed by a hash of the inputs, computed slice by
    slice, and of the extractor's weights, so a probe, a C search and a benchmark reuse them.

    Args:
        model: a model with a Dense named "head" (features = the head's input), or any
            model (features = its flattened output).
        x: an array of inputs, a dict of arrays (named inputs, e.g. keras-hub's
            token_ids / padding_mask / segment_ids; not cached), or a finite batched
            `tf.data.Dataset` of `x` or `(x, y, ...)` batches (read once, in its own
            batches, not cached: a dataset, e.g. one reading files, may change its
            order on every pass).
        batch_size: images per compiled call (arrays only).
        cache_dir: folder for the .npy cache, or None.
        use_cache: look up and store array results in the caches.

    Returns:
        A float32 array `(num_examples, num_features)`.

    Raises:
        ValueError: if `batch_size` is not a positive integer, or `x` is empty or
            holds non-finite values.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="features"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> features = keras_transfer.recipes.extract_features(model, np.ones((5, 4), "float32"))
    >>> features.shape, features.dtype
    ((5, 3), dtype('float32'))
    """
    batch_size = validation.check_positive_int("batch_size", batch_size)
    call, compiled, dtype = _compiled(model, "features")
    if isinstance(x, dict):
        x = dict_batches(x, None, batch_size)
    if isinstance(x, tf.data.Dataset):
        return _run_dataset(compiled, dtype, x, "x", with_labels=False)
    x = np.asarray(x)
    validation.check_not_empty(x, "x")
    key = _scan(x, call.target, want_key=use_cache)
    if key and key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = os.path.join(cache_dir, f"features_{key}.npy") if (cache_dir and key) else None
    if path and os.path.exists(path):
        features = np.load(path)
    else:
        features = _run_arrays(compiled, dtype, x, batch_size)
        if path:
            os.makedirs(cache_dir, exist_ok=True)
            np.save(path, features)
    if key:
        if len(_MEMORY_CACHE) > 16:
            _MEMORY_CACHE.pop(next(iter(_MEMORY_CACHE)))
        _MEMORY_CACHE[key] = features
    return features


def predict_in_batches(model, x, batch_size=64):
    """`model`'s outputs on array `x`, as `predict` gives them, without its retracing in loops.

    The model runs in inference mode as one compiled `tf.function` per model, kept while
    the model lives and reused across calls (one trace for every batch size), on
    `batch_size` examples at a time. Unlike `model.predict`, whose functions share one
    retracing counter across models, evaluating many new models in a loop logs no
    retracing warnings.

    Args:
        model: a single-input Keras model with one output.
        x: an array of inputs.
        batch_size: examples per compiled call.

    Returns:
        A float32 array `(num_examples, ...)` of the model's outputs.
    """
    batch_size = validation.check_positive_int("batch_size", batch_size)
    x = np.asarray(x)
    validation.check_not_empty(x, "x")
    _, compiled, dtype = _compiled(model, "outputs")
    return _run_arrays(compiled, dtype, x, batch_size, flatten=False)


def fit_logistic_regression(features, y, num_classes, C="auto", max_iter=2000, seed=0):
    """Multinomial logistic regression with L-BFGS on standardised features.

    Minimises scikit-learn's objective on the standardised features `z` (in float64):
    mean cross-entropy of `z @ W.T + b` plus `||W||^2 / (2 C n)` (the bias unpenalised),
    until every gradient entry is below `SOLVER_TOL` (or `max_iter`). Two classes use
    one logit (sigmoid), installed as `softmax([0, z])`.

    Args:
        features: a `(num_examples, num_features)` array.
        y: integer labels in `[0, num_classes)`.
        num_classes: the number of classes (columns of the kernel).
        C: inverse L2 strength, or "auto": picked from `CANDIDATE_C` by stratified
            3-fold cross-validation (1.0 when a class has fewer than 2 examples).
        max_iter: L-BFGS iterations at most.
        seed: seed of the cross-validation folds.

    Returns:
        `(kernel, bias, C)`: float32 `kernel` `(num_features, num_classes)` and `bias`
        `(num_classes,)` expressed on the raw (unstandardised) features, so that
        `features @ kernel + bias` gives the logits, and the `C` used.

    Raises:
        ValueError: if `C` is neither "auto" nor a positive number.

    Example:

    >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> kernel, bias, C = keras_transfer.recipes.fit_logistic_regression(x, y, 2, C=1.0)
    >>> kernel.shape, bias.shape, C
    ((1, 2), (2,), 1.0)
    >>> np.argmax(x @ kernel + bias, axis=1)
    array([0, 0, 0, 1, 1, 1])
    """
    from threadpoolctl import threadpool_limits

    # One BLAS thread: L-BFGS on probe-sized problems is 5-10x slower with threads that
    # spin against TensorFlow's own pool (measured here, see BENCHMARKS.md).
    with threadpool_limits(1):
        return _fit_logistic_regression(features, y, num_classes, C, max_iter, seed)


def _fit_logistic_regression(features, y, num_classes, C, max_iter, seed):
    from sklearn.linear_model import LogisticRegression

    # float64: scikit-learn solves in the input's precision, and a float32 objective cannot
    # resolve a gradient of SOLVER_TOL (measured: 4e-6 at a float32 "optimum").
    features = np.asarray(features, dtype="float64")
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    z = (features - mean) / std
    if C == "auto":
        C = _cross_validate_C(z, y, num_classes, max_iter, seed)
    C = validation.check_positive_float("C", C)
    clf = LogisticRegression(C=C, max_iter=max_iter, tol=SOLVER_TOL)
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


def linear_probe(model, data, y=None, C="auto", batch_size=64, cache_dir=None, use_cache=True, max_iter=2000, seed=0):
    """Fits the head of a `build_classifier` model as a convex problem and installs it.

    With the backbone frozen, training the head is multinomial logistic regression
    on fixed features: the features are extracted in compiled batches
    (`extract_features`; memory stays bounded by one batch whatever the size of
    `data`, and a dataset streaming from files is read once), the problem is solved
    with `fit_logistic_regression` and the solution is assigned to the head.

    Args:
        model: a model with a Dense named "head" (its backbone is used frozen, as is).
        data: inputs `x` (with `y`: images, token ids, or a dict of named inputs such as
            keras-hub's), or an (x, y) tuple, or a finite tf.data.Dataset of (x, y).
        y: integer labels when `data` is an array.
        C: inverse L2 strength, or "auto" (cross-validated).
        batch_size: images per compiled extraction call (arrays; a dataset keeps its batches).
        cache_dir: folder of the features' .npy cache (arrays), or None.
        use_cache: reuse features extracted earlier for the same inputs and weights (arrays).
        max_iter: L-BFGS iterations at most.
        seed: seed of the cross-validation folds of `C="auto"`.

    Returns:
        A dict with the chosen `C`, `train_accuracy`, `num_features` and `seconds` spent.

    Raises:
        ValueError: if `model` has no head, the labels are not class ids of the
            head, or as `extract_features` and `fit_logistic_regression`.

    Reference:
        Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
        Out-of-Distribution", ICLR 2022.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="features"),
    ...                           keras.layers.Dense(2, activation="softmax", name="head")])
    >>> result = keras_transfer.recipes.linear_probe(model, x, y, C=1.0)
    >>> result["C"], result["num_features"], result["train_accuracy"]
    (1.0, 8, 1.0)
    """
    start = time.perf_counter()
    head = get_head(model)
    num_classes = head.units
    named = split_dict_inputs(data, y)
    if named is not None:
        data, y = dict_batches(named[0], named[1], batch_size, "data"), None
    if isinstance(data, tf.data.Dataset) and y is None:
        _, compiled, dtype = _compiled(model, "features")
        features, y = _run_dataset(compiled, dtype, data, "data", with_labels=True)
        y = validation.check_labels(y, num_classes, "y")
    else:
        x, y = as_numpy_xy((data, y) if y is not None else data, "data")
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
