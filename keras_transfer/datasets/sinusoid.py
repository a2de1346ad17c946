"""Sinusoid regression tasks (Finn et al., 2017, §5.1).

A task is `y = A sin(x - phase)` with amplitude `A ~ U[0.1, 5]`, phase `~ U[0, pi]` and inputs
`x ~ U[-5, 5]`. Every function returns the structure `MetaModel.fit` reads:
`((support_x, support_y, query_x), query_y)` with shapes `[tasks, shots, 1]`.
"""

import math

import numpy as np
import tensorflow as tf

from keras_transfer.utils import validation

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


def _check(num_tasks, k_shot, k_query):
    validation.check_positive_int("num_tasks", num_tasks)
    validation.check_positive_int("k_shot", k_shot)
    validation.check_positive_int("k_query", k_query)


def sinusoid_tasks(num_tasks, k_shot=10, k_query=10, seed=0, return_parameters=False):
    """Samples `num_tasks` sinusoid regression tasks as NumPy arrays (float32).

    A task is `y = A sin(x - phase)` with amplitude `A ~ U[0.1, 5]`, phase
    `~ U[0, pi]` and inputs `x ~ U[-5, 5]`.

    Args:
        num_tasks: number of tasks, a positive int.
        k_shot: support points per task.
        k_query: query points per task.
        seed: NumPy seed; the same seed gives the same tasks.
        return_parameters: also return each task's amplitude and phase.

    Returns:
        `((support_x, support_y, query_x), query_y)`, each `(num_tasks, k, 1)`; with
        `return_parameters=True`, the pair `(tasks, (amplitude, phase))`, each of
        amplitude and phase `(num_tasks,)`.

    Raises:
        ValueError: if `num_tasks`, `k_shot` or `k_query` is not a positive int.

    Reference:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks", ICML 2017 (§5.1).

    Example:

    >>> (sx, sy, qx), qy = keras_transfer.datasets.sinusoid_tasks(
    ...     num_tasks=4, k_shot=5, k_query=10)
    >>> sx.shape, sy.shape, qx.shape, qy.shape
    ((4, 5, 1), (4, 5, 1), (4, 10, 1), (4, 10, 1))
    >>> tasks, (amplitude, phase) = keras_transfer.datasets.sinusoid_tasks(
    ...     4, return_parameters=True)
    >>> (sx, sy, _), _ = tasks
    >>> bool(np.allclose(sy, amplitude[:, None, None] * np.sin(sx - phase[:, None, None]),
    ...                  atol=1e-5))
    True
    """
    _check(num_tasks, k_shot, k_query)
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(*AMPLITUDE_RANGE, size=num_tasks)
    phase = rng.uniform(*PHASE_RANGE, size=num_tasks)
    x = rng.uniform(*X_RANGE, size=(num_tasks, k_shot + k_query, 1))
    y = amplitude[:, None, None] * np.sin(x - phase[:, None, None])
    x, y = x.astype("float32"), y.astype("float32")
    tasks = ((x[:, :k_shot], y[:, :k_shot], x[:, k_shot:]), y[:, k_shot:])
    if return_parameters:
        return tasks, (amplitude.astype("float32"), phase.astype("float32"))
    return tasks


def sinusoid_task_dataset(meta_batch_size=25, k_shot=10, k_query=10, seed=0):
    """An endless `tf.data.Dataset` of sinusoid meta-batches, generated in-graph.

    Tasks are drawn as by `sinusoid_tasks`, with stateless random ops seeded by
    `seed` and the element's index, so the stream is the same in every run.

    Args:
        meta_batch_size: tasks per element, a positive int.
        k_shot: support points per task.
        k_query: query points per task.
        seed: integer seed of the stream.

    Returns:
        An infinite `tf.data.Dataset` whose elements are
        `((support_x, support_y, query_x), query_y)` with a static meta-batch
        axis, ready for `MetaModel.fit(dataset, steps_per_epoch=...)`.

    Raises:
        ValueError: if `meta_batch_size`, `k_shot` or `k_query` is not a positive int.

    Reference:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks", ICML 2017 (§5.1).

    Example:

    >>> dataset = keras_transfer.datasets.sinusoid_task_dataset(meta_batch_size=8, k_shot=5)
    >>> (sx, sy, qx), qy = next(iter(dataset))
    >>> tuple(sx.shape), tuple(qy.shape)
    ((8, 5, 1), (8, 10, 1))
    """
    _check(meta_batch_size, k_shot, k_query)
    n = k_shot + k_query

    def make(index):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), index]), 3)
        amplitude = tf.random.stateless_uniform(
            [meta_batch_size, 1, 1], seeds[0], AMPLITUDE_RANGE[0], AMPLITUDE_RANGE[1]
        )
        phase = tf.random.stateless_uniform([meta_batch_size, 1, 1], seeds[1], *PHASE_RANGE)
        x = tf.random.stateless_uniform([meta_batch_size, n, 1], seeds[2], *X_RANGE)
        y = amplitude * tf.sin(x - phase)
        return (x[:, :k_shot], y[:, :k_shot], x[:, k_shot:]), y[:, k_shot:]

    return (
        tf.data.Dataset.counter(dtype=tf.int64)
        .map(make, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
