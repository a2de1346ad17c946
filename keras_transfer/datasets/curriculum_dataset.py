"""Curriculum mini-batches: each step samples uniformly from the easiest `pacing(step)` examples."""

import numpy as np
import tensorflow as tf

from keras_transfer.datasets.curriculum_order import CurriculumOrder
from keras_transfer.datasets.curriculum_order import difficulty_order
from keras_transfer.schedules.pacing_function import PacingFunction
from keras_transfer.utils import validation

# Batches computed ahead of the training step: a re-sorted `CurriculumOrder` reaches training
# at most this many batches (plus what Keras itself prefetches) after `update`.
PREFETCHED_BATCHES = 2


def curriculum_dataset(
    x,
    y,
    difficulty,
    pacing,
    batch_size=32,
    seed=0,
    initial_step=0,
    steps=None,
    balance_classes=False,
):
    """A `tf.data.Dataset` of curriculum batches: step `i` samples from the easiest `pacing(i)` examples.

    The examples are sorted by `difficulty` (easiest first); at step `i` a batch of
    `batch_size` distinct examples is drawn uniformly from the first
    `pacing.num_examples(i, n)` of them (Hacohen & Weinshall's sampling from the
    prefix). Once the pacing reaches 1, every batch is a uniform sample of the whole
    dataset.

    The step is the index of the element (`tf.data.Dataset.range`), and the draw of
    step `i` depends only on `(seed, i)` (stateless random ops): a run resumed with
    `initial_step=k` yields exactly the batches that the uninterrupted run yields from
    step `k` on (pass the optimizer's `iterations`, or `initial_epoch * steps_per_epoch`).
    The data is held once, as one tensor; each step gathers only its batch, and the
    draw costs O(prefix size) per step (no per-epoch index list or copies of the data).

    `steps` batches make one pass (by default `pacing.total_steps - initial_step`, or
    endless when the pacing has no `total_steps`). Use it with `model.fit(dataset,
    epochs=E, steps_per_epoch=S)`: Keras keeps one iterator across epochs when
    `steps_per_epoch` is given, so the step count runs on over epochs. A custom-step
    model trains on these `(x, y)` batches as on any others; `SourceOnly` takes them
    as they are, `DANN` after zipping in target batches,
    `dataset.map(lambda x, y: ((x, target), y))`.

    The batch size must fit in the first prefix: `pacing.num_examples(0, n) >=
    batch_size`, so that no batch repeats an example (raise the pacing's
    `starting_fraction` or lower `batch_size` otherwise).

    Args:
        x: inputs, an array of `n` examples (n >= 1, finite).
        y: labels, an array of `n` rows, or None for a dataset of `x` batches.
        difficulty: one finite score per example (lower is easier), or a
            `keras_transfer.datasets.CurriculumOrder` to change the order while
            training (self-paced learning).
        pacing: a `keras_transfer.schedules.PacingFunction`.
        batch_size: examples per batch, a positive integer.
        seed: an integer seed of the draws.
        initial_step: the step of the first batch (to resume a run).
        steps: the number of batches, None for `pacing.total_steps - initial_step`
            (endless when `pacing.total_steps` is None).
        balance_classes: order the examples class-balanced by the labels `y` (see
            `difficulty_order`): every prefix holds each class in proportion. For a
            `CurriculumOrder`, give it the labels instead.

    Returns:
        A prefetched `tf.data.Dataset` of `(x, y)` batches (or `x` batches), of known
        length when finite.

    Raises:
        ValueError: if `x` is empty or not finite, `y` or `difficulty` do not have one
            row per example, `difficulty` holds NaN, `pacing` is not a
            `PacingFunction`, `batch_size` is larger than the first prefix,
            `initial_step` / `steps` are not valid step counts, or `balance_classes`
            has no labels to use.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2).

    Example:

    >>> x = np.arange(100, dtype="float32")[:, None]
    >>> y = np.zeros(100, "int64")
    >>> pacing = keras_transfer.schedules.StepPacing(0.1, step_length=5, total_steps=20)
    >>> dataset = keras_transfer.datasets.curriculum_dataset(
    ...     x, y, difficulty=x[:, 0], pacing=pacing, batch_size=4)
    >>> len(dataset)
    20
    >>> [int(batch_x.numpy().max()) < 10 for batch_x, _ in dataset.take(5)]
    [True, True, True, True, True]
    """
    x = np.asarray(x)
    validation.check_not_empty(x, "x")
    validation.check_finite(x, "x")
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"`x` and `y` must have the same length. Received: len(x)={n}, len(y)={len(y)}")
    order = _order_variable(difficulty, n, y if balance_classes else None, balance_classes)
    if not isinstance(pacing, PacingFunction):
        raise ValueError(
            "`pacing` must be a keras_transfer.schedules.PacingFunction (e.g. FixedExponentialPacing). "
            f"Received: pacing={pacing!r}"
        )
    batch_size = validation.check_positive_int("batch_size", batch_size)
    first = int(pacing.num_examples(0, n))
    if batch_size > first:
        raise ValueError(
            f"`batch_size` must be at most the {first} examples available at step 0 "
            f"(starting_fraction={pacing.starting_fraction} of {n}). Received: batch_size={batch_size}. "
            f"Raise `starting_fraction` to at least {batch_size / n:.4g} or lower `batch_size`."
        )
    initial_step = validation.check_non_negative_int("initial_step", initial_step)
    if steps is None and pacing.total_steps is not None:
        steps = max(pacing.total_steps - initial_step, 0)
    if steps is not None:
        steps = validation.check_positive_int(
            "steps", steps, fix="Lower `initial_step` below the pacing's total_steps, or pass `steps`"
        )
    return _build(x, y, order, pacing, n, batch_size, int(seed), initial_step, steps)


def _order_variable(difficulty, n, labels, balance_classes):
    if not isinstance(balance_classes, bool):
        raise ValueError(f"`balance_classes` must be True or False. Received: balance_classes={balance_classes!r}")
    if isinstance(difficulty, CurriculumOrder):
        if difficulty.num_examples != n:
            raise ValueError(
                f"`difficulty` must order the {n} examples of `x`. Received: a CurriculumOrder of "
                f"{difficulty.num_examples} examples."
            )
        if balance_classes:
            raise ValueError(
                "`balance_classes` must be False with a CurriculumOrder. Received: balance_classes=True. "
                "Build the order with labels instead: CurriculumOrder(difficulty, labels=y)."
            )
        return difficulty.order
    if balance_classes and labels is None:
        raise ValueError("`balance_classes` needs the labels `y`. Received: balance_classes=True with y=None.")
    return tf.constant(difficulty_order(difficulty, n, labels=labels))


def _build(x, y, order, pacing, n, batch_size, seed, initial_step, steps):
    inputs = tf.convert_to_tensor(x)
    labels = None if y is None else tf.convert_to_tensor(y)

    def batch_at(step):
        available = pacing.num_examples(step, n)
        # `batch_size` distinct positions of the prefix, uniformly: the top-k of random keys.
        keys = tf.random.stateless_uniform(
            tf.reshape(available, [1]), seed=tf.stack([tf.constant(seed, "int64"), step])
        )
        _, positions = tf.math.top_k(keys, k=batch_size, sorted=False)
        rows = tf.gather(tf.convert_to_tensor(order), positions)
        batch_x = tf.gather(inputs, rows)
        return batch_x if labels is None else (batch_x, tf.gather(labels, rows))

    if steps is None:
        steps_ds = tf.data.Dataset.counter(start=initial_step, dtype=tf.int64)
    else:
        steps_ds = tf.data.Dataset.range(initial_step, initial_step + steps, dtype=tf.int64)
    return steps_ds.map(batch_at).prefetch(PREFETCHED_BATCHES)
