"""Which model will transfer? Candidates ranked by a transferability score, without fine-tuning."""

import time

import keras
import numpy as np

from keras_transfer import ops
from keras_transfer.ops import transferability_inputs
from keras_transfer.recipes import backbones
from keras_transfer.recipes import classifier
from keras_transfer.recipes.linear_probe import extract_features
from keras_transfer.recipes.linear_probe import predict_in_batches
from keras_transfer.recipes.transferability_ranking import TransferabilityRanking
from keras_transfer.utils import validation

# metric -> (score function, whether it reads the model's outputs (source-class
# probabilities) rather than the features that feed its head).
METRICS = {
    "logme": (ops.log_me, False),
    "h_score": (ops.h_score, False),
    "leep": (ops.leep, True),
    "nce": (lambda probabilities, labels: ops.nce(np.argmax(probabilities, axis=1), labels), True),
}


def _check_candidates(candidates, metric):
    if not isinstance(candidates, dict) or not candidates:
        received = (
            "candidates={}" if isinstance(candidates, dict) else f"candidates of type {type(candidates).__name__}"
        )
        raise ValueError(
            "`candidates` must be a non-empty dict {name: keras.Model or backbone name}. "
            f"Received: {received}. Pass e.g. {{'mobilenet_v3_small': 'mobilenet_v3_small', 'mine': my_model}}."
        )
    for name, candidate in candidates.items():
        if isinstance(candidate, str):
            if METRICS[metric][1]:
                raise ValueError(
                    f"`candidates` must map to models that output source-class probabilities for metric={metric!r}. "
                    f"Received: candidates[{name!r}]={candidate!r}, a headless backbone name. Pass the source "
                    "classifier itself (e.g. keras.applications.MobileNetV3Small(weights='imagenet')), or use "
                    "metric='logme' to score the backbone's features."
                )
            backbones.get_spec(candidate)  # unknown names fail now, before any model is built
        elif not isinstance(candidate, keras.Model):
            raise ValueError(
                "`candidates` must map names to keras.Model objects or registry backbone names "
                f"(keras_transfer.recipes.available_backbones()). Received: candidates[{name!r}] of type "
                f"{type(candidate).__name__}"
            )


def _backbone_features_model(name, input_shape, weights, image_size, value_range):
    """A registry backbone with its preprocessing and average pooling (the head is never used)."""
    return classifier.build_classifier(
        name,
        2,
        input_shape,
        weights=weights,
        image_size=image_size,
        value_range=value_range,
        dropout=0.0,
        name=f"{name}_transferability",
    )


def rank_transferability(
    candidates,
    x,
    y,
    metric="logme",
    batch_size=64,
    cache_dir=None,
    weights="imagenet",
    image_size=None,
    value_range=(0.0, 255.0),
):
    """Ranks candidate models for a target dataset by a transferability score, best first.

    Each candidate is run once over the labelled target examples, `batch_size` examples
    at a time (memory bounded by one batch plus the features), and scored without any
    training: a few seconds per candidate where fine-tuning each would take minutes to
    hours. "logme" and "h_score" score features: a model with a `Dense` named "head"
    (a `build_classifier` model) gives the pooled features that feed its head, any
    other model its flattened output (a feature extractor); features are cached by
    `extract_features` (in memory, and in `cache_dir` when given), so scoring one
    candidate with two metrics extracts once. A registry backbone name
    (`available_backbones()`) is built with `weights`, the family's preprocessing of
    pixels in `value_range`, resizing to `image_size` and average pooling. "leep" and
    "nce" score a source classifier's outputs: its class probabilities (NCE uses their
    argmax as source labels, so logits do as well).

    Scores rank candidates for one target dataset; they are not comparable across
    datasets, and their gaps are not accuracy gaps.

    Args:
        candidates: a dict `{name: keras.Model or registry backbone name}`.
        x: target inputs, an array `(num_examples, ...)`; images `(n, H, W, 1 or 3)`
            for backbone names.
        y: target labels, integer class ids in `[0, K)` with every class present.
        metric: "logme" (You et al. 2021; the default, the most reliable in its paper),
            "h_score", "leep" or "nce".
        batch_size: examples per compiled model call.
        cache_dir: folder of the feature cache (.npy files), or None.
        weights: weights of backbones given by name: "imagenet", a local file, or None
            (random initialisation: offline tests).
        image_size: the (height, width) backbones given by name see; default: the input
            size raised to the backbone's minimum.
        value_range: (low, high) of the pixel values, for backbones given by name.

    Returns:
        A `TransferabilityRanking`: rows of rank, name, score, feature dim and seconds,
        sorted by descending score; `print` it for a markdown table.

    Raises:
        ValueError: if `candidates` is not a non-empty dict of models and registry names
            (names are refused for "leep" and "nce", which need a classifier), `metric`
            is unknown, `x` is empty or holds NaN, `y` does not match `x` or is not
            valid target labels (one class only, fewer examples than classes), or a
            model's outputs are not probabilities for "leep".

    Reference:
        You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for
        Transfer Learning", ICML 2021. https://arxiv.org/abs/2102.11005

    Example:

    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 16)
    >>> x = (y[:, None] + 0.3 * rng.normal(size=(32, 4))).astype("float32")
    >>> keep = keras.Sequential([keras.Input((4,)), keras.layers.Identity()])
    >>> drop = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda v: 0 * v + 1)])
    >>> ranking = keras_transfer.recipes.rank_transferability({"keep": keep, "drop": drop}, x, y)
    >>> ranking.names
    ['keep', 'drop']
    """
    validation.check_one_of("metric", metric, tuple(METRICS))
    batch_size = validation.check_positive_int("batch_size", batch_size)
    _check_candidates(candidates, metric)
    x = np.asarray(x)
    validation.check_not_empty(x, "x")
    transferability_inputs.check_target_labels(y, len(x), name="y", other="x")
    score_fn, uses_outputs = METRICS[metric]
    rows = []
    for name, candidate in candidates.items():
        start = time.perf_counter()
        model = candidate
        if isinstance(candidate, str):
            model = _backbone_features_model(candidate, x.shape[1:], weights, image_size, value_range)
        if uses_outputs:
            values = predict_in_batches(model, x, batch_size)
            values = values.reshape(len(values), -1)
        else:
            values = extract_features(model, x, batch_size=batch_size, cache_dir=cache_dir)
        try:
            score = score_fn(values, y)
        except ValueError as error:
            raise ValueError(f"Candidate {name!r} ({metric}): {error}") from error
        seconds = time.perf_counter() - start
        rows.append({"name": name, "score": score, "feature_dim": int(values.shape[1]), "seconds": seconds})
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["score"])  # stable: ties keep the input order
    ranked = tuple({"rank": rank, **rows[i]} for rank, i in enumerate(order, start=1))
    return TransferabilityRanking(metric, ranked)
