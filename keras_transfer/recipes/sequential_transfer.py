"""A task curriculum: fine-tuning through a chain of tasks, each stage starting from the last."""

import keras
import numpy as np

from keras_transfer.datasets.pipeline import as_numpy_xy
from keras_transfer.recipes.classifier import get_head
from keras_transfer.recipes.classifier import replace_head
from keras_transfer.recipes.fine_tune import evaluate_accuracy
from keras_transfer.recipes.fine_tune import fine_tune
from keras_transfer.utils import validation

_NEW_HEAD = ("auto", "always", "never")


def _per_stage(name, value, count):
    """`value` repeated for `count` stages, or a list of `count` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(
                f"`{name}` must be one value or one per task ({count}). Received: {name} with {len(value)} values"
            )
        return list(value)
    return [value] * count


def _unpack_task(task, index):
    """`(x, y, classes)` of one task: `(x, y)` or `(x, y, class_names)`."""
    if not isinstance(task, (tuple, list)) or len(task) not in (2, 3):
        raise ValueError(
            f"`tasks[{index}]` must be an (x, y) or (x, y, class_names) tuple. Received: {type(task).__name__}"
            + (f" of {len(task)} parts" if isinstance(task, (tuple, list)) else "")
        )
    x, y = as_numpy_xy((task[0], task[1]), f"tasks[{index}]")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"`tasks[{index}]` must have integer class ids as labels. Received: labels of dtype {y.dtype}")
    num_classes = max(int(np.max(y)) + 1, 2)
    classes = tuple(task[2]) if len(task) == 3 else None
    if classes is not None:
        if len(classes) < num_classes:
            raise ValueError(
                f"`tasks[{index}]` must name every class its labels use. Received: {len(classes)} class names "
                f"for labels up to {num_classes - 1}"
            )
        num_classes = max(len(classes), 2)
    y = validation.check_labels(y, num_classes, f"tasks[{index}] labels")
    label_set = classes if classes is not None else tuple(int(v) for v in np.unique(y))
    return x, y, num_classes, label_set


def _needs_new_head(new_head, model, num_classes, label_set, previous, index):
    units = get_head(model).units
    if new_head == "always":
        return True
    differs = units != num_classes or (previous is not None and label_set != previous)
    if new_head == "never" and units != num_classes:
        raise ValueError(
            f"`new_head` must allow a new head: tasks[{index}] has {num_classes} classes and the head has "
            f"{units}. Received: new_head='never'. Use new_head='auto'."
        )
    return differs if new_head == "auto" else False


def sequential_transfer(
    model,
    tasks,
    epochs=5,
    learning_rate=1e-3,
    probe="convex",
    new_head="auto",
    batch_size=32,
    validation_data=None,
    callbacks=None,
    verbose=0,
    seed=0,
):
    """Fine-tunes through a chain of tasks, each stage from the model the last one left.

    A task curriculum for sequential transfer: stage `k` fine-tunes on `tasks[k]`
    (`keras_transfer.recipes.fine_tune`) starting from the weights stage `k - 1` ended
    with. When a task's classes differ from the previous task's, the stage starts with
    a new head (`replace_head`, sharing the backbone) fitted first by the linear probe
    (`probe`, LP-FT); a task with the same classes keeps the head and fine-tunes without
    a probe. Classes are compared by the class names a task gives as its third element,
    else by the set of label ids: give names (or `new_head="always"`) when two tasks
    reuse the ids 0..k-1 for different classes.

    Args:
        model: a `build_classifier` model (trained in place; its head is replaced when
            the first task's class count differs), or a function
            `model_fn(num_classes) -> model` called for the first task.
        tasks: a non-empty list of `(x, y)` or `(x, y, class_names)` tuples, easiest
            (or source) first, the target task last; `y` holds integer class ids.
        epochs: fine-tuning epochs, one value or one per task.
        learning_rate: fine-tuning learning rate, one value or one per task.
        probe: the linear probe of a new head, "convex", "fit" or None (as `fine_tune`).
        new_head: "auto" (a new head when the classes change), "always" or "never".
        batch_size: batch size of every stage.
        validation_data: None, or one `(x, y)` (or None) per task: each stage reports
            its accuracy on it.
        callbacks: Keras callbacks passed to every stage's `fit`.
        verbose: verbosity of `fit`.
        seed: seed of the shuffling and the probes.

    Returns:
        `(model, stages)`: the final model, and one dict per task with `num_classes`,
        `new_head` (bool), `histories` (what `fine_tune` returned: the probe's result
        and the fine-tuning `History`), `train_accuracy` and `val_accuracy` (None
        without validation data).

    Raises:
        ValueError: if `tasks` is empty or a task is malformed, `new_head` is not
            "auto", "always" or "never" (or is "never" while the classes count changes),
            a per-task list has the wrong length, or as `fine_tune`.

    Reference:
        Bengio et al., "Curriculum Learning", ICML 2009; Yosinski et al., "How
        transferable are features in deep neural networks?", NeurIPS 2014; Kumar et
        al., "Fine-Tuning can Distort Pretrained Features and Underperform
        Out-of-Distribution", ICLR 2022 (LP-FT).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    >>> model, stages = keras_transfer.recipes.sequential_transfer(
    ...     lambda k: keras_transfer.recipes.build_classifier(
    ...         "simple_cnn", k, (8, 8, 1), widths=(4, 4, 4)),
    ...     tasks=[(x, np.arange(16) % 2), (x, np.arange(16) % 4)], epochs=1, batch_size=8)
    >>> [(stage["num_classes"], stage["new_head"]) for stage in stages], model.output_shape
    ([(2, False), (4, True)], (None, 4))
    """
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"`tasks` must be a non-empty list of (x, y) tasks. Received: tasks={tasks!r}")
    validation.check_one_of("new_head", new_head, _NEW_HEAD)
    count = len(tasks)
    epochs = _per_stage("epochs", epochs, count)
    learning_rate = _per_stage("learning_rate", learning_rate, count)
    validation_data = _per_stage("validation_data", validation_data, count) if validation_data is not None else None
    unpacked = [_unpack_task(task, i) for i, task in enumerate(tasks)]
    if not isinstance(model, keras.Model):
        if not callable(model):
            raise ValueError(f"`model` must be a Keras model or a function of num_classes. Received: model={model!r}")
        model = model(unpacked[0][2])
    stages, previous = [], None
    for index, (x, y, num_classes, label_set) in enumerate(unpacked):
        replace = _needs_new_head(new_head, model, num_classes, label_set, previous, index)
        if replace:
            activation = getattr(get_head(model).activation, "__name__", "linear")
            activation = "softmax" if activation == "softmax" else None
            model = replace_head(model, num_classes, activation=activation, copy=False, name=model.name)
        val = None if validation_data is None else validation_data[index]
        model, histories = fine_tune(
            model,
            x,
            y,
            validation_data=val,
            probe=probe if replace else None,
            epochs=epochs[index],
            learning_rate=learning_rate[index],
            batch_size=batch_size,
            callbacks=callbacks,
            verbose=verbose,
            seed=seed + index,
        )
        stages.append(
            {
                "num_classes": num_classes,
                "new_head": replace,
                "histories": histories,
                "train_accuracy": evaluate_accuracy(model, x, y),
                "val_accuracy": None if val is None else evaluate_accuracy(model, *as_numpy_xy(val, "validation_data")),
            }
        )
        previous = label_set
    return model, stages
