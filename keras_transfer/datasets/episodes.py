"""N-way K-shot episodes over any labelled data (arrays, a batched `tf.data` of (x, y), tfds).

An episode draws `n_way` classes, then `k_shot + q_queries` distinct examples of each: the first
`k_shot` form the support set, the rest the query set (support and query are disjoint). Labels
are re-indexed 0..n_way-1 in a random order per episode. Every function returns the structure
the meta-learners' `fit` reads: `((support_x, support_y, query_x), query_y)` with shapes
`[episodes, n_way * k_shot, ...]`, `[episodes, n_way * k_shot]`, `[episodes, n_way * q_queries, ...]`,
`[episodes, n_way * q_queries]`. Meta-train / meta-test class splits are given with `classes`.
"""

import numpy as np
import tensorflow as tf

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.utils import validation


def _prepare(data, classes, n_way, k_shot, q_queries):
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
    if n_way > len(classes):
        raise ValueError(
            f"`n_way` must be at most the number of classes available ({len(classes)}). "
            f"Received: n_way={n_way}. Lower n_way or add classes."
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
    return x, by_class


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


def sample_episodes(data, num_episodes, n_way=5, k_shot=1, q_queries=5, classes=None, seed=0):
    """`num_episodes` N-way K-shot episodes as NumPy arrays (see the module docstring).

    Args:
        data: `(x, y)` arrays or a finite batched `tf.data.Dataset` of `(x, y)`.
        classes: the labels episodes may use (a meta-train or meta-test class split);
            default all.
        seed: NumPy seed; the same seed gives the same episodes.
    """
    validation.check_positive_int("num_episodes", num_episodes)
    x, by_class = _prepare(data, classes, n_way, k_shot, q_queries)
    rng = np.random.default_rng(seed)
    parts = [_episode(rng, x, by_class, n_way, k_shot, q_queries) for _ in range(num_episodes)]
    sx, sy, qx, qy = (np.stack(p) for p in zip(*parts))
    return (sx, sy.astype("int64"), qx), qy.astype("int64")


def episode_dataset(data, n_way=5, k_shot=1, q_queries=5, episodes_per_batch=4, classes=None, seed=0):
    """An endless, seeded `tf.data.Dataset` of batches of episodes (`episodes_per_batch` each)."""
    validation.check_positive_int("episodes_per_batch", episodes_per_batch)
    x, by_class = _prepare(data, classes, n_way, k_shot, q_queries)

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
