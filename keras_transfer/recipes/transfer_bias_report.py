"""Did transfer hurt a group? Per-class and per-group accuracy of a transferred model against a reference."""

import keras
import numpy as np

from keras_transfer.recipes.bias_report import BiasReport
from keras_transfer.recipes.linear_probe import predict_in_batches
from keras_transfer.recipes.proportion_intervals import paired_difference_interval
from keras_transfer.utils import validation

SOURCE_MODES = ("accuracy", "confidence")


def _outputs(name, model, x, batch_size, num_examples):
    """(class ids, 2-D outputs or None) of a model run on `x`, or of given predictions."""
    if isinstance(model, keras.Model):
        if x is None:
            raise ValueError(f"`x` must be the target inputs when `{name}` is a model. Received: x=None")
        outputs = predict_in_batches(model, x, batch_size)
        outputs = outputs.reshape(len(outputs), -1)
    else:
        outputs = np.asarray(model)
        if outputs.dtype == object or outputs.ndim not in (1, 2):
            raise ValueError(
                f"`{name}` must be a keras.Model, class ids (n,) or outputs (n, num_classes). "
                f"Received: {name} with shape {outputs.shape} and dtype {outputs.dtype}"
            )
    if len(outputs) != num_examples:
        raise ValueError(
            f"`{name}` must give one prediction per label in `y` ({num_examples}). Received: {len(outputs)} "
            f"predictions. Pass predictions and labels of the same test examples."
        )
    validation.check_finite(outputs, name)
    if outputs.ndim == 2:
        return np.argmax(outputs, axis=1), outputs
    if not np.all(np.equal(np.mod(outputs, 1), 0)):
        raise ValueError(
            f"`{name}` as a 1-D array must hold integer class ids. Received: {name} with values such as "
            f"{outputs[:5].tolist()}. Pass the predicted class ids, or the outputs (n, num_classes)."
        )
    return outputs.astype("int64"), None


def _check_width(name, outputs, num_classes, fix):
    if outputs is not None and outputs.shape[1] != num_classes:
        raise ValueError(
            f"`{name}` must output one score per target class ({num_classes}). Received: {name} with "
            f"{outputs.shape[1]} outputs. {fix}"
        )


def _group_masks(groups, num_examples):
    """[(name, boolean mask)] of `groups`: an array of labels, one per example, or {name: mask}."""
    if groups is None:
        return []
    if isinstance(groups, dict):
        if not groups:
            raise ValueError("`groups` must name at least one group. Received: groups={}. Pass None for no groups.")
        masks = []
        for name, mask in groups.items():
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.shape != (num_examples,):
                raise ValueError(
                    f"`groups` must map names to boolean masks of shape ({num_examples},), one entry per example. "
                    f"Received: groups[{name!r}] with shape {mask.shape} and dtype {mask.dtype}. "
                    "Pass e.g. {'inverted': is_inverted} with a boolean array over the test examples."
                )
            masks.append((str(name), mask))
    else:
        labels = np.asarray(groups)
        if labels.shape != (num_examples,):
            raise ValueError(
                f"`groups` must hold one group label per example, shape ({num_examples},). Received: groups with "
                f"shape {labels.shape}. Pass the group of each test example, or a dict {{name: boolean mask}}."
            )
        validation.check_finite(labels, "groups")
        masks = [(str(value), labels == value) for value in np.unique(labels)]
    empty = [name for name, mask in masks if not mask.any()]
    if empty:
        raise ValueError(
            f"`groups` must give every group at least one example. Received: groups with no examples in {empty}. "
            "Drop the empty groups."
        )
    return masks


def _reference_columns(row, prefix, correct, other_correct, confidence):
    table = (
        np.sum(correct & other_correct),
        np.sum(correct & ~other_correct),
        np.sum(~correct & other_correct),
        np.sum(~correct & ~other_correct),
    )
    difference, low, high = paired_difference_interval(*table, confidence=confidence)
    row.update({f"{prefix}difference": difference, f"{prefix}low": low, f"{prefix}high": high})
    row[f"{prefix}harmed"] = bool(high < 0)


def _row(kind, name, mask, correct, reference, confidence, source):
    row = {"kind": kind, "name": name, "n": int(mask.sum()), "transferred": float(correct["transferred"][mask].mean())}
    for key in ("baseline", "source"):
        if key in correct:
            row[key] = float(correct[key][mask].mean())
    if source is not None:
        row["source_entropy"] = float(source[0][mask].mean())
        row["source_confidence"] = float(source[1][mask].mean())
    if reference:
        _reference_columns(row, "", correct["transferred"][mask], correct[reference][mask], confidence)
    if reference == "baseline" and "source" in correct:
        _reference_columns(row, "source_", correct["transferred"][mask], correct["source"][mask], confidence)
    return row


def _source_uncertainty(outputs):
    """Normalised entropy (0 confident, 1 uniform) and top probability of each row of source outputs."""
    outputs = outputs.astype("float64")
    is_probability = np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3)
    if not is_probability:  # logits
        outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    probabilities = outputs / outputs.sum(axis=1, keepdims=True)
    entropy = -np.sum(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0)), axis=1)
    return entropy / np.log(max(probabilities.shape[1], 2)), probabilities.max(axis=1)


def transfer_bias_report(
    transferred,
    x,
    y,
    baseline=None,
    source=None,
    groups=None,
    class_names=None,
    confidence=0.95,
    batch_size=128,
    source_mode="accuracy",
):
    """Did transfer hurt a class or a group? Accuracy per class and group against a reference.

    What a model learns first can carry into the target task: a source dataset that
    under-represents a class or a kind of input (a demographic group, inverted
    images, a rare digit) gives features that serve it poorly, and fine-tuning on
    a few target labels may not repair them. This report runs the transferred model
    and the reference models once over the same labelled target test examples and
    gives, for all of them, each class and each user-given group: the number of
    examples, each model's accuracy, and the difference `transferred - reference`
    with a paired confidence interval (Newcombe's method 10, see
    `paired_difference_interval`: the models predict the same examples, so their
    errors are paired). A row is `harmed` when the whole interval lies below 0:
    transfer made that class or group significantly worse. Groups with few examples
    get wide intervals and are flagged only when the gap is large.

    The reference is `baseline`, a model trained from scratch on the same target
    data (transfer's counterfactual), or, without a baseline, `source`.
    `source` shows what the source model brings to each group. With
    `source_mode="accuracy"` it must output the target classes: the source model
    itself when the label spaces agree, or, when they differ, a linear probe of its
    frozen features (`recipes.linear_probe` on `replace_head(source, K)`), which
    measures how well the source representation separates the target classes within
    each group; its accuracy and `transferred - source` (columns `source_difference`,
    `source_low`, `source_high`, `source_harmed`) are reported. With
    `source_mode="confidence"` any source classifier is accepted and each row gets
    its mean normalised entropy (0 confident, 1 uniform) and mean top probability on
    the target inputs (softmax is applied to outputs that are not probabilities).
    These are descriptive: a network can be confidently wrong on inputs unlike its
    training data, so high confidence does not mean the source serves a group well.

    The intervals hold row by row, not jointly: over many rows a few intervals miss
    by chance (at 95%, one in twenty). For a joint guarantee over `r` rows, pass
    `confidence=1 - 0.05 / r` (Bonferroni).

    Args:
        transferred: the transferred model (a `keras.Model` over `x`), or its
            predictions: class ids `(n,)` or outputs `(n, K)`.
        x: the target test inputs, or None when every model is given as predictions.
        y: the target test labels, integer class ids in `[0, K)`.
        baseline: a model trained from scratch on the target data, or its
            predictions, or None.
        source: the source model's behaviour on the target data (see above), a model
            or its outputs, or None.
        groups: None, an array of group labels (one per example), or a dict
            `{name: boolean mask}` (groups may overlap).
        class_names: names of the K target classes; default "class 0", ... (K from
            the transferred model's outputs, else from the labels and predictions).
        confidence: the coverage of each interval, in (0, 1).
        batch_size: examples per compiled model call.
        source_mode: "accuracy" (source outputs the target classes) or "confidence".

    Returns:
        A `BiasReport`: rows "all", one per class present in `y` and one per group;
        `harmed` lists the rows transfer made significantly worse; `print` it for a
        markdown table, `plot(path)` for a forest plot.

    Raises:
        ValueError: if `y` is not valid labels, predictions and labels differ in
            length, outputs hold NaN, a model's outputs are not the K target classes,
            `class_names` has the wrong length, `groups` has the wrong length or an
            empty group, or `confidence`, `batch_size` or `source_mode` are invalid.

    Reference:
        Newcombe, "Improved confidence intervals for the difference between binomial
        proportions based on paired data", Statistics in Medicine 17(22), 1998.

    Example:

    >>> y = np.repeat([0, 1], 20)
    >>> transferred = y.copy()
    >>> transferred[:12] = 1  # wrong on 12 of the 20 examples of class 0
    >>> report = keras_transfer.recipes.transfer_bias_report(
    ...     transferred, None, y, baseline=y, class_names=["cat", "dog"])
    >>> report.harmed
    ['all', 'cat']
    >>> report["cat"]["transferred"], report["dog"]["harmed"]
    (0.4, False)
    """
    validation.check_fraction("confidence", confidence, inclusive_low=False, fix="Pass e.g. confidence=0.95.")
    batch_size = validation.check_positive_int("batch_size", batch_size)
    validation.check_one_of("source_mode", source_mode, SOURCE_MODES)
    y = np.asarray(y)
    validation.check_not_empty(y, "y")
    validation.check_finite(y, "y")
    y = validation.check_labels(y, np.iinfo("int64").max, name="y")
    if x is not None:
        x = validation.check_finite(np.asarray(x), "x")
        if len(x) != len(y):
            raise ValueError(
                f"`x` must hold one example per label in `y` ({len(y)}). Received: x with {len(x)} examples. "
                "Pass the inputs and labels of the same test examples."
            )
    group_masks = _group_masks(groups, len(y))  # checked before any model runs
    predicted = {"transferred": _outputs("transferred", transferred, x, batch_size, len(y))}
    for name, model in (("baseline", baseline), ("source", source)):
        if model is not None:
            predicted[name] = _outputs(name, model, x, batch_size, len(y))
    num_classes = _num_classes(class_names, predicted, y)
    y = validation.check_labels(y, num_classes, name="y")
    fixes = {
        "transferred": "Pass the model fine-tuned on the target classes.",
        "baseline": "Train the baseline on the target classes.",
        "source": "Pass a linear probe of the source on the target classes, or source_mode='confidence'.",
    }
    correct = {}
    for name, (ids, outputs) in predicted.items():
        if name == "source" and source_mode == "confidence":
            if outputs is None:
                raise ValueError(
                    "`source` must give 2-D outputs for source_mode='confidence'. Received: 1-D class ids. "
                    "Pass the model or its outputs (n, source classes)."
                )
            continue
        _check_width(name, outputs, num_classes, fixes[name])
        validation.check_labels(ids, num_classes, name=f"{name} predictions")
        correct[name] = ids == y
    uncertainty = None
    if "source" in predicted and "source" not in correct:
        uncertainty = _source_uncertainty(predicted["source"][1])
    reference = "baseline" if "baseline" in correct else ("source" if "source" in correct else None)
    names = list(class_names) if class_names is not None else [f"class {k}" for k in range(num_classes)]
    masks = [("all", "all", np.ones(len(y), dtype=bool))]
    masks += [("class", names[k], y == k) for k in range(num_classes) if np.any(y == k)]
    masks += [("group", name, mask) for name, mask in group_masks]
    rows = tuple(_row(kind, name, mask, correct, reference, confidence, uncertainty) for kind, name, mask in masks)
    return BiasReport(rows, reference, float(confidence))


def _num_classes(class_names, predicted, y):
    if class_names is not None:
        class_names = list(class_names)
        if len(class_names) < 2:
            raise ValueError(f"`class_names` must name at least 2 classes. Received: class_names={class_names!r}")
        return len(class_names)
    outputs = predicted["transferred"][1]
    if outputs is not None:
        if outputs.shape[1] < 2:
            raise ValueError(
                "`transferred` must output one score per target class (at least 2). Received: transferred with "
                f"{outputs.shape[1]} output. For a sigmoid model pass its outputs as "
                "np.concatenate([1 - p, p], axis=1), or its class ids (p > 0.5)."
            )
        return outputs.shape[1]
    ids = [y] + [ids for name, (ids, _) in predicted.items() if name != "source"]
    return int(max(int(np.max(v)) for v in ids)) + 1
