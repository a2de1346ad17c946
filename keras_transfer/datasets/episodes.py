"""N-way K-shot episodes over any labelled data (arrays, a batched `tf.data` of (x, y), tfds).

An episode draws `n_way` classes, then `k_shot + q_queries` distinct examples of each: the first
`k_shot` form the support set, the rest the query set (support and query are disjoint). Labels
are re-indexed 0..n_way-1 in a random order per episode. Every function returns the structure
the meta-learners' `fit` reads: `((support_x, support_y, query_x), query_y)` with shapes
`[episodes, n_way * k_shot, ...]`, `[episodes, n_way * k_shot]`, `[episodes, n_way * q_queries, ...]`,
`[episodes, n_way * q_queries]`. Meta-train / meta-test class splits are given with `classes`.

`class_augmentations` enlarges a small class pool the way the few-shot literature does for
Omniglot (Santoro et al. 2016, Finn et al. 2017): every transform of a class (a rotation by
90/180/270 degrees, a transpose or a flip) is a NEW class, so one digit class gives up to eight.
Only the classes passed to that call are transformed: give it to the meta-training sampler
and leave it out of the meta-test one, and the test classes never enter training.
"""

import numpy as np
import tensorflow as tf

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.utils import validation

# Class-creating transforms of images [N, H, W] or [N, H, W, C] (H == W for rot90/rot270/transpose).
_CLASS_AUGMENTATIONS = {
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.swapaxes(x, 1, 2),
    "flip_lr": lambda x: x[:, :, ::-1],
    "flip_ud": lambda x: x[:, ::-1],
}
_NEEDS_SQUARE = ("rot90", "rot270", "transpose")


def _check_augmentations(x, class_augmentations):
    if class_augmentations is None:
        return []
    if isinstance(class_augmentations, str) or not isinstance(class_augmentations, (list, tuple)):
        raise ValueError(
            "`class_augmentations` must be None or a list of transform names "
            f"{sorted(_CLASS_AUGMENTATIONS)}. Received: class_augmentations={class_augmentations!r}. "
            'Use e.g. ["rot90", "rot180", "rot270"].'
        )
    unknown = [a for a in class_augmentations if a not in _CLASS_AUGMENTATIONS]
    if unknown or len(set(class_augmentations)) != len(class_augmentations):
        raise ValueError(
            f"`class_augmentations` must be distinct names from {sorted(_CLASS_AUGMENTATIONS)}. "
            f"Received: class_augmentations={list(class_augmentations)!r}"
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            "`class_augmentations` needs images of shape [N, H, W] or [N, H, W, C]. Received: x with "
            f"shape {x.shape}. Reshape flat features to images first."
        )
    if x.shape[1] != x.shape[2] and any(a in _NEEDS_SQUARE for a in class_augmentations):
        raise ValueError(
            f"`class_augmentations` {list(_NEEDS_SQUARE)} need square images. Received: x with "
            f"shape {x.shape}. Use rot180/flip_lr/flip_ud only."
        )
    return list(class_augmentations)


def _augment_classes(x, by_class, class_augmentations):
    """Adds one new class per (class, transform); returns the enlarged x and index map."""
    if not class_augmentations:
        return x, by_class
    keys = sorted(by_class)
    stride = max(keys) + 1
    selected = np.concatenate([by_class[c] for c in keys])
    parts, out, offset = [x], dict(by_class), len(x)
    for j, name in enumerate(class_augmentations, start=1):
        parts.append(np.ascontiguousarray(_CLASS_AUGMENTATIONS[name](x[selected])))
        start = offset
        for c in keys:
            n = len(by_class[c])
            out[j * stride + c] = np.arange(start, start + n)
            start += n
        offset += len(selected)
    return np.concatenate(parts), out


def _prepare(data, classes, n_way, k_shot, q_queries, class_augmentations=None):
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, (tuple, list)) and len(spec) >= 2 and spec[1].shape.rank == 0:
            data = data.batch(1024)  # an unbatched (x, y) dataset, e.g. tfds as_supervised
    x, y = as_numpy_xy(data, "data")
    validation.check_finite(x, "x")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            "`data` labels must be 1-D integer class ids. Received: y with shape "
            f"{y.shape}. Pass np.argmax(one_hot, -1) for one-hot labels."
        )
    validation.check_positive_int("n_way", n_way)
    validation.check_positive_int("k_shot", k_shot)
    validation.check_positive_int("q_queries", q_queries)
    available = np.unique(y)
    if classes is None:
        classes = available
    classes = np.asarray(sorted(set(np.asarray(classes).tolist())))
    missing = sorted(set(classes.tolist()) - set(available.tolist()))
    if missing:
        raise ValueError(
            f"`classes` must be labels present in the data. Received: classes with {missing} "
            f"absent; present: {available.tolist()}"
        )
    augmentations = _check_augmentations(x, class_augmentations)
    num_classes = len(classes) * (1 + len(augmentations))
    if n_way > num_classes:
        raise ValueError(
            f"`n_way` must be at most the number of classes available ({num_classes}). "
            f"Received: n_way={n_way}. Lower n_way or add classes (or `class_augmentations`)."
        )
    by_class = {int(c): np.flatnonzero(y == c) for c in classes}
    need = k_shot + q_queries
    short = {c: len(i) for c, i in by_class.items() if len(i) < need}
    if short:
        raise ValueError(
            f"`k_shot` + `q_queries` must be at most the examples available per class. Received: "
            f"k_shot={k_shot}, q_queries={q_queries} (needs {need}), but classes {short} "
            "(class: examples) have fewer. Lower k_shot/q_queries or drop those classes."
        )
    return _augment_classes(x, by_class, augmentations)


def _episode(rng, x, by_class, n_way, k_shot, q_queries):
    chosen = rng.choice(sorted(by_class), size=n_way, replace=False)
    s_idx, q_idx = [], []
    for c in chosen:
        picked = rng.choice(by_class[int(c)], size=k_shot + q_queries, replace=False)
        s_idx.append(picked[:k_shot])
        q_idx.append(picked[k_shot:])
    s_idx, q_idx = np.concatenate(s_idx), np.concatenate(q_idx)
    s_lab = np.repeat(np.arange(n_way), k_shot)
    q_lab = np.repeat(np.arange(n_way), q_queries)
    # Shuffle inside the sets so the order carries no label information.
    ps, pq = rng.permutation(len(s_idx)), rng.permutation(len(q_idx))
    return x[s_idx[ps]], s_lab[ps], x[q_idx[pq]], q_lab[pq]


def sample_episodes(data, num_episodes, n_way=5, k_shot=1, q_queries=5, classes=None, seed=0, class_augmentations=None):
    """Samples `num_episodes` N-way K-shot episodes as NumPy arrays.

    An episode draws `n_way` classes, then `k_shot + q_queries` distinct examples
    of each: the first `k_shot` form the support set, the rest the query set.
    Labels are re-indexed 0..n_way-1 in a random order per episode, and the
    examples are shuffled inside each set.

    Args:
        data: `(x, y)` arrays or a finite `tf.data.Dataset` of `(x, y)` (batched,
            or unbatched with scalar labels such as tfds' `as_supervised`).
        num_episodes: number of episodes, a positive int.
        n_way: classes per episode.
        k_shot: support examples per class.
        q_queries: query examples per class.
        classes: the labels episodes may use (a meta-train or meta-test class split);
            default all.
        seed: NumPy seed; the same seed gives the same episodes.
        class_augmentations: None or a list of transforms from "rot90", "rot180", "rot270",
            "transpose", "flip_lr", "flip_ud"; each transform of each class in `classes` is an
            extra class (images only). Use it for meta-training pools, not meta-test ones.

    Returns:
        `((support_x, support_y, query_x), query_y)` with shapes
        `(num_episodes, n_way * k_shot, ...)`, `(num_episodes, n_way * k_shot)`,
        `(num_episodes, n_way * q_queries, ...)`, `(num_episodes, n_way * q_queries)`;
        labels are int64.

    Raises:
        ValueError: if a count is not positive, labels are not 1-D, `classes`
            are absent from the data, there are fewer classes than `n_way` or a
            class has fewer than `k_shot + q_queries` examples, or
            `class_augmentations` is invalid for the data.

    Reference:
        Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.

    Example:

    >>> x = np.arange(60, dtype="float32").reshape((30, 2))
    >>> y = np.repeat(np.arange(6), 5)
    >>> (sx, sy, qx), qy = keras_transfer.datasets.sample_episodes(
    ...     (x, y), num_episodes=4, n_way=3, k_shot=2, q_queries=3)
    >>> sx.shape, sy.shape, qx.shape, qy.shape
    ((4, 6, 2), (4, 6), (4, 9, 2), (4, 9))
    >>> sorted(sy[0].tolist())
    [0, 0, 1, 1, 2, 2]
    """
    validation.check_positive_int("num_episodes", num_episodes)
    x, by_class = _prepare(data, classes, n_way, k_shot, q_queries, class_augmentations)
    rng = np.random.default_rng(seed)
    parts = [_episode(rng, x, by_class, n_way, k_shot, q_queries) for _ in range(num_episodes)]
    sx, sy, qx, qy = (np.stack(p) for p in zip(*parts))
    return (sx, sy.astype("int64"), qx), qy.astype("int64")


def episode_dataset(
    data, n_way=5, k_shot=1, q_queries=5, episodes_per_batch=4, classes=None, seed=0, class_augmentations=None
):
    """An endless, seeded `tf.data.Dataset` of batches of N-way K-shot episodes.

    Episodes are drawn as by `sample_episodes`, `episodes_per_batch` per element,
    for the meta-learners' `fit(dataset, steps_per_epoch=...)`.

    Args:
        data: `(x, y)` arrays or a finite `tf.data.Dataset` of `(x, y)`.
        n_way: classes per episode.
        k_shot: support examples per class.
        q_queries: query examples per class.
        episodes_per_batch: episodes per dataset element, a positive int.
        classes: the labels episodes may use; default all.
        seed: NumPy seed; the same seed gives the same stream of episodes.
        class_augmentations: None or a list of class-creating transforms (see
            `sample_episodes`).

    Returns:
        An infinite `tf.data.Dataset` whose elements are
        `((support_x, support_y, query_x), query_y)`, each with a leading
        `episodes_per_batch` axis.

    Raises:
        ValueError: as `sample_episodes`, and if `episodes_per_batch` is not
            positive.

    Reference:
        Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.

    Example:

    >>> x = np.arange(60, dtype="float32").reshape((30, 2))
    >>> y = np.repeat(np.arange(6), 5)
    >>> dataset = keras_transfer.datasets.episode_dataset(
    ...     (x, y), n_way=3, k_shot=2, q_queries=3, episodes_per_batch=2)
    >>> (sx, sy, qx), qy = next(iter(dataset))
    >>> tuple(sx.shape), tuple(sy.shape), tuple(qx.shape), tuple(qy.shape)
    ((2, 6, 2), (2, 6), (2, 9, 2), (2, 9))
    """
    validation.check_positive_int("episodes_per_batch", episodes_per_batch)
    x, by_class = _prepare(data, classes, n_way, k_shot, q_queries, class_augmentations)

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            parts = [_episode(rng, x, by_class, n_way, k_shot, q_queries) for _ in range(episodes_per_batch)]
            sx, sy, qx, qy = (np.stack(p) for p in zip(*parts))
            yield (sx, sy.astype("int64"), qx), qy.astype("int64")

    e, s, q = episodes_per_batch, n_way * k_shot, n_way * q_queries
    feat = tuple(x.shape[1:])
    spec = (
        (
            tf.TensorSpec((e, s) + feat, tf.as_dtype(x.dtype)),
            tf.TensorSpec((e, s), tf.int64),
            tf.TensorSpec((e, q) + feat, tf.as_dtype(x.dtype)),
        ),
        tf.TensorSpec((e, q), tf.int64),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(2)
