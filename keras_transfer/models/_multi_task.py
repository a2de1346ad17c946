"""Argument checks and data checks of `MultiTaskModel` (task names, heads, loss weights, batches)."""

import numbers
import re

import keras
import numpy as np

from keras_transfer.utils import validation

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
LOSS_WEIGHT_MODES = ("uniform", "uncertainty")
INPUT_KEYS = ("inputs", "task")


def check_trunk(trunk):
    """The trunk's declared input (a `keras.KerasTensor` or a structure of them)."""
    inputs = None
    if isinstance(trunk, keras.Model):
        try:
            inputs = list(trunk.inputs or [])
        except (AttributeError, ValueError):
            inputs = None
    if not inputs:
        raise ValueError(
            "`trunk` must be a built Keras model with a declared input, e.g. "
            "`keras.Sequential([keras.Input((64,)), keras.layers.Dense(32)])`. "
            f"Received: trunk={trunk!r}"
        )
    if len(inputs) == 1:
        return inputs[0]
    return trunk.input


def build_heads(heads):
    """`{task: head layer}` from `{task: layer or number of classes}`, in the given order."""
    if not isinstance(heads, dict) or not heads:
        raise ValueError(
            "`heads` must be a non-empty dict mapping task names to a head layer or model, or to a number "
            f"of classes (a Dense softmax head is built). Received: heads={heads!r}"
        )
    built = {}
    for name, head in heads.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                "`heads` keys must be task names made of letters, digits and underscores, starting with a "
                f"letter (they name the logs `<task>_loss` and the serving outputs). Received: {name!r}"
            )
        if isinstance(head, numbers.Integral) and not isinstance(head, bool):
            classes = validation.check_int_at_least(f"heads[{name!r}]", head, 2, "A task needs at least 2 classes.")
            head = keras.layers.Dense(classes, activation="softmax", dtype="float32", name=f"{name}_head")
        elif not isinstance(head, keras.layers.Layer):
            raise ValueError(
                f"`heads[{name!r}]` must be a Keras layer or model, or a number of classes >= 2. "
                f"Received: heads[{name!r}]={head!r}"
            )
        built[name] = head
    return built


def check_head_output(name, output):
    """The number of classes of a head's symbolic output `(batch, classes)`."""
    shape = tuple(output.shape)
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(
            f"`heads[{name!r}]` must output one score per class, shape (batch, classes) with classes >= 2. "
            f"Received: a head with output shape {shape}. End it with `keras.layers.Dense(num_classes)`."
        )
    return int(shape[-1])


def parse_loss_weights(loss_weights, names):
    """`(mode, weights)`: mode "fixed" with one float per task, or "uncertainty" with None."""
    if isinstance(loss_weights, str):
        validation.check_one_of(
            "loss_weights", loss_weights, LOSS_WEIGHT_MODES, "Or pass a dict task name -> non-negative weight."
        )
        if loss_weights == "uncertainty":
            return "uncertainty", None
        return "fixed", [1.0] * len(names)
    if isinstance(loss_weights, dict):
        if set(loss_weights) != set(names):
            raise ValueError(
                f"`loss_weights` must name every task exactly once: {list(names)}. Received: "
                f"loss_weights={loss_weights!r} (missing {sorted(set(names) - set(loss_weights), key=str)}, "
                f"unknown {sorted(set(loss_weights) - set(names), key=str)})."
            )
        values = [loss_weights[n] for n in names]
    elif isinstance(loss_weights, (list, tuple)):
        if len(loss_weights) != len(names):
            raise ValueError(
                f"`loss_weights` must hold one weight per task ({len(names)}: {list(names)}). Received: "
                f"loss_weights={list(loss_weights)!r} ({len(loss_weights)} weights)."
            )
        values = list(loss_weights)
    else:
        raise ValueError(
            '`loss_weights` must be "uniform", "uncertainty", a dict task name -> weight, or a list of one '
            f"weight per task. Received: loss_weights={loss_weights!r}"
        )
    if not all(validation.is_non_negative_finite(v) for v in values) or not any(float(v) > 0 for v in values):
        raise ValueError(
            "`loss_weights` must be non-negative finite numbers, at least one of them positive. "
            f"Received: loss_weights={loss_weights!r}"
        )
    return "fixed", [float(v) for v in values]


def split_inputs(x, model_name):
    """`(inputs, task_ids)` of a batch's `x`: `{"inputs": ..., "task": ...}` or `(inputs, task_ids)`."""
    if isinstance(x, dict) and set(x) == set(INPUT_KEYS):
        return x["inputs"], x["task"]
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    raise ValueError(
        f'`{model_name}` trains on batches `({{"inputs": x, "task": task_ids}}, y)`: every example names its '
        f"task. Received: x of type {type(x).__name__}"
        + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
        + ". Build the batches with `keras_transfer.datasets.multi_task_dataset(tasks)` or pass "
        '`fit({"inputs": x, "task": task_ids}, y)`.'
    )


def check_arrays(x, y, num_classes, names):
    """Eager checks of `fit` / `evaluate` arrays: task ids and labels in range (datasets: in the graph)."""
    if not isinstance(x, dict) or "task" not in x:
        return
    task = x["task"]
    if not isinstance(task, (np.ndarray, list)):
        return
    task = np.asarray(task)
    if task.size == 0:
        raise ValueError("`x['task']` must contain at least one example. Received: an empty x['task'].")
    if not np.issubdtype(task.dtype, np.integer) or task.min() < 0 or task.max() >= len(names):
        raise ValueError(
            f"`x['task']` must hold integer task ids in [0, {len(names)}) (the positions of {list(names)} "
            f"in `heads`). Received: x['task'] with dtype {task.dtype} and values in "
            f"[{task.min()}, {task.max()}]."
        )
    if not isinstance(y, (np.ndarray, list)):
        return
    y = np.asarray(y).reshape(-1)
    if len(y) != len(task.reshape(-1)):
        raise ValueError(f"`y` must hold one label per example. Received: len(y)={len(y)}, len(x['task'])={task.size}")
    for index, name in enumerate(names):
        labels = y[task.reshape(-1) == index]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes[index]):
            raise ValueError(
                f"`y` must hold class ids in [0, {num_classes[index]}) for the examples of task {name!r} "
                f"(its head has {num_classes[index]} classes). Received: labels in [{labels.min()}, "
                f"{labels.max()}] for task {name!r}. Re-index each task's labels from 0."
            )
