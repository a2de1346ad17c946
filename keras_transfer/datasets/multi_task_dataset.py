"""Mixes the `(x, y)` arrays of several tasks into one `tf.data` stream of mixed batches."""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_transfer.utils import validation

SAMPLING = ("proportional", "uniform", "temperature")


def _check_label_ids(y, name):
    if y.ndim == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0)
    )
    if y.ndim != 1 or not integral or y.min() < 0:
        raise ValueError(
            f"`{name}` must be a 1-D array of non-negative integer class ids. Received: {name} with shape "
            f"{y.shape}, dtype {y.dtype} and values such as {y.ravel()[:5].tolist()}. Pass "
            "`np.argmax(one_hot, axis=-1)` for one-hot labels; re-index each task's labels from 0."
        )
    return y


def _check_tasks(tasks):
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError(
            "`tasks` must be a non-empty dict mapping task names to `(x, y)` arrays, in the order of the "
            f"model's heads. Received: tasks={tasks!r}"
        )
    arrays, shape, dtype = {}, None, None
    for name, pair in tasks.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"`tasks[{name!r}]` must be an `(x, y)` pair of arrays. Received: {type(pair).__name__}")
        x, y = np.asarray(pair[0]), np.asarray(pair[1])
        if len(x) == 0:
            raise ValueError(
                f"`tasks[{name!r}]` must contain at least one example. Received: an empty x. "
                "Drop the task or give it data."
            )
        if len(y) != len(x):
            raise ValueError(
                f"`tasks[{name!r}]` must have one label per example. Received: len(x)={len(x)}, len(y)={len(y)}"
            )
        validation.check_finite(x, f"tasks[{name!r}] x")
        y = _check_label_ids(y, f"tasks[{name!r}] y")
        if shape is None:
            shape, dtype = x.shape[1:], x.dtype
        elif x.shape[1:] != shape or x.dtype != dtype:
            raise ValueError(
                "Every task's `x` must have the same feature shape and dtype (one trunk reads them). "
                f"Received: tasks[{name!r}] x with shape {x.shape[1:]} and dtype {x.dtype}, the first "
                f"task's with shape {shape} and dtype {dtype}."
            )
        arrays[name] = (x, y.astype("int64"))
    return arrays


def sampling_ratios(sizes, sampling="proportional", temperature=2.0):
    """The probability of drawing each task's next example, from the tasks' sizes.

    Args:
        sizes: dict task name -> number of training examples.
        sampling: "proportional" (p_i ∝ n_i), "uniform" (p_i = 1/T),
            "temperature" (p_i ∝ n_i^(1/temperature)), or a dict task name ->
            non-negative ratio (normalised to sum 1).
        temperature: the temperature of "temperature" sampling (1 is proportional,
            large values approach uniform).

    Returns:
        A dict task name -> probability (they sum to 1), in the order of `sizes`.

    Raises:
        ValueError: if `sampling` is unknown, a dict of ratios does not name every
            task exactly or holds a negative value or only zeros, or `temperature`
            is not positive.

    Reference:
        Arivazhagan et al., "Massively Multilingual Neural Machine Translation in
        the Wild", 2019 (temperature sampling).

    Example:

    >>> ratios = keras_transfer.datasets.sampling_ratios({"a": 300, "b": 100}, "temperature", temperature=2.0)
    >>> {name: round(p, 3) for name, p in ratios.items()}  # sqrt(300) : sqrt(100)
    {'a': 0.634, 'b': 0.366}
    """
    names = list(sizes)
    if isinstance(sampling, dict):
        if set(sampling) != set(names):
            raise ValueError(
                f"`sampling` must name every task exactly once: {names}. Received: sampling={sampling!r} "
                f"(missing {sorted(set(names) - set(sampling))}, unknown {sorted(set(sampling) - set(names))})."
            )
        bad = {k: v for k, v in sampling.items() if not validation.is_non_negative_finite(v)}
        if bad or not any(float(v) > 0 for v in sampling.values()):
            raise ValueError(
                "`sampling` ratios must be non-negative finite numbers, at least one positive. "
                f"Received: sampling={sampling!r}"
            )
        raw = [float(sampling[n]) for n in names]
    else:
        validation.check_one_of(
            "sampling", sampling, SAMPLING, "Or pass a dict task name -> ratio for fixed sampling ratios."
        )
        temperature = validation.check_positive_float("temperature", temperature)
        if sampling == "uniform":
            raw = [1.0] * len(names)
        else:
            power = 1.0 if sampling == "proportional" else 1.0 / temperature
            raw = [float(sizes[n]) ** power for n in names]
    total = math.fsum(raw)
    return {n: r / total for n, r in zip(names, raw)}


def multi_task_dataset(
    tasks,
    sampling="proportional",
    batch_size=32,
    seed=0,
    temperature=2.0,
    steps=None,
):
    """A `tf.data.Dataset` of mixed batches `({"inputs": x, "task": task_ids}, y)` for `MultiTaskModel`.

    Each example is drawn from task `i` with probability `p_i` (see
    `sampling_ratios`), from that task's own shuffled, repeated stream
    (`tf.data.Dataset.sample_from_datasets`); the examples are then batched, so one
    batch holds several tasks. `task_ids` (int32) is the position of each example's
    task in `tasks`: list the tasks in the order of the model's heads. Labels are
    int64 class ids in each task's own label set (task 0's class 3 and task 1's
    class 3 are different classes); one scalar per example, so tasks with different
    numbers of classes share a batch without padding.

    Args:
        tasks: dict task name -> `(x, y)` arrays; every `x` has the same feature
            shape and dtype, `y` holds integer class ids.
        sampling: "proportional", "uniform", "temperature", or a dict task name ->
            ratio (see `sampling_ratios`).
        batch_size: examples per batch (all batches are full).
        seed: seed of the shuffles and of the task draws.
        temperature: the temperature of `sampling="temperature"`.
        steps: batches per epoch; default `ceil(total examples / batch_size)`.

    Returns:
        A finite, prefetched `tf.data.Dataset` of `steps` batches.

    Raises:
        ValueError: if `tasks` is empty or not a dict, a task has no examples, its
            `x` and `y` lengths differ, `x` is not finite, labels are not
            non-negative integers, feature shapes or dtypes differ between tasks,
            or `sampling`, `batch_size`, `temperature` or `steps` are invalid.

    Reference:
        Caruana, "Multitask Learning", Machine Learning 28, 1997.

    Example:

    >>> tasks = {"even": (np.zeros((30, 2), "float32"), np.zeros(30, "int64")),
    ...          "odd": (np.ones((10, 2), "float32"), np.ones(10, "int64"))}
    >>> dataset = keras_transfer.datasets.multi_task_dataset(tasks, "uniform", batch_size=8)
    >>> len(dataset)  # ceil(40 / 8)
    5
    >>> x, y = next(iter(dataset))
    >>> sorted(x), tuple(x["inputs"].shape), tuple(x["task"].shape), tuple(y.shape)
    (['inputs', 'task'], (8, 2), (8,), (8,))
    """
    arrays = _check_tasks(tasks)
    batch_size = validation.check_positive_int("batch_size", batch_size)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")
    ratios = sampling_ratios({n: len(x) for n, (x, _) in arrays.items()}, sampling, temperature)
    total = sum(len(x) for x, _ in arrays.values())
    steps = math.ceil(total / batch_size) if steps is None else validation.check_positive_int("steps", steps)
    streams = []
    for index, (x, y) in enumerate(arrays.values()):
        task = np.full(len(x), index, "int32")
        ds = tf.data.Dataset.from_tensor_slices(({"inputs": x, "task": task}, y))
        streams.append(ds.shuffle(len(x), seed=seed + 1 + index, reshuffle_each_iteration=True).repeat())
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=list(ratios.values()), seed=seed)
    return mixed.batch(batch_size, drop_remainder=True).take(steps).prefetch(tf.data.AUTOTUNE)
