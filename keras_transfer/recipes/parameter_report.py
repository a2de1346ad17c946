"""Counting what trains: `trainable_report` for any model, `adapter_parameter_report` for adapted ones."""

import numpy as np

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.recipes._dora_adapters import dora_layers
from keras_transfer.utils import model_graph


def _size(variable):
    return int(np.prod(variable.shape)) if len(variable.shape) else 1


def _count(variables):
    """Parameters in `variables`, each variable counted once."""
    return sum(_size(v) for v in {id(v): v for v in variables}.values())


def trainable_report(model):
    """Counts of trainable and total parameters: {"trainable", "total", "fraction"}.

    Each variable is counted once, even when layers share it.

    Args:
        model: any built `keras.Model` (or layer).

    Returns:
        A dict with `trainable` and `total` parameter counts and their ratio `fraction`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> model.get_layer("body").trainable = False
    >>> keras_transfer.recipes.trainable_report(model)
    {'trainable': 18, 'total': 58, 'fraction': 0.3103448275862069}
    """
    trainable, total = _count(model.trainable_weights), _count(model.weights)
    return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


def _role(layer):
    if isinstance(layer, (BottleneckAdapter, ConvAdapter)):
        return "adapter"
    if model_graph.lora_layers(layer):
        return "lora"
    if dora_layers(layer):
        return "dora"
    if layer.trainable and layer.trainable_weights:
        if isinstance(layer, model_graph.NORMALIZATION_LAYERS):
            return "normalization"
        return "head"
    return "frozen"


def _lora_rows(model, by_role):
    """Rows for the LoRA- and DoRA-enabled layers; adds their trainable factors to `by_role`."""
    rows, lora_vars = [], set()
    for path, layer in model_graph.iter_all_layers(model):
        role = "lora" if getattr(layer, "lora_enabled", False) else "dora"
        if role == "lora" or getattr(layer, "dora_enabled", False):
            variables = [v for v in layer.weights if role in v.name]
            lora_vars.update(id(v) for v in variables)
            trainable = sum(_size(v) for v in variables if v.trainable)
            by_role[role] += trainable
            rows.append(
                {
                    "name": path,
                    "class": type(layer).__name__,
                    "role": role,
                    "params": sum(_size(v) for v in variables),
                    "trainable": trainable,
                }
            )
    return rows, lora_vars


def _nested_adapter_rows(path, layer, lora_vars, by_role):
    """Rows for the adapters inside a leaf layer (a `HoulsbyTransformerEncoder` block).

    Adds the block's trainable weights to `by_role`: adapters, its normalisation sublayers,
    the rest as "other". Returns the rows ([] when `layer` holds no adapter).
    """
    sublayers = model_graph.iter_sublayers(layer, path)
    adapters = [(p, sub) for p, sub in sublayers if isinstance(sub, (BottleneckAdapter, ConvAdapter))]
    if not adapters:
        return []
    rows, adapter_vars = [], set()
    for sub_path, sub in adapters:
        adapter_vars.update(id(v) for v in sub.weights)
        trainable = sum(_size(v) for v in sub.trainable_weights)
        by_role["adapter"] += trainable
        params = sum(_size(v) for v in sub.weights)
        rows.append(
            {"name": sub_path, "class": type(sub).__name__, "role": "adapter", "params": params, "trainable": trainable}
        )
    norm_vars = {
        id(v) for _, sub in sublayers if isinstance(sub, model_graph.NORMALIZATION_LAYERS) for v in sub.weights
    }
    for variable in layer.trainable_weights:
        if id(variable) in adapter_vars or id(variable) in lora_vars:
            continue
        by_role["normalization" if id(variable) in norm_vars else "other"] += _size(variable)
    return rows


def adapter_parameter_report(model):
    """Counts what trains: totals, trainable share, and one row per adapter / LoRA layer.

    Args:
        model: a Functional or Sequential model (typically from `add_adapters`).

    Returns:
        A dict with `total_params`, `trainable_params`, `trainable_percent`,
        `added_params` (adapter + LoRA / DoRA factors and magnitudes), `added_percent`
        (relative to the rest, the "extra parameters" of Houlsby et al.), `by_role` (trainable
        parameters of adapters, LoRA, DoRA, normalisation, head, other) and `adapters` (one row
        `{"name", "class", "role", "params", "trainable"}` per adapter, LoRA or DoRA layer,
        adapters inside a `HoulsbyTransformerEncoder` block included, e.g.
        `"transformer_layer_0/attention_adapter"`).

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model.

    Reference:
        Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> report = keras_transfer.recipes.adapter_parameter_report(adapted)
    >>> report["total_params"], report["trainable_params"], report["added_params"]
    (100, 60, 42)
    >>> report["by_role"]
    {'adapter': 42, 'lora': 0, 'dora': 0, 'normalization': 0, 'head': 18, 'other': 0}
    """
    model_graph.check_graph_model(model)
    counts = trainable_report(model)
    total, trainable = counts["total"], counts["trainable"]
    by_role = {"adapter": 0, "lora": 0, "dora": 0, "normalization": 0, "head": 0, "other": 0}
    rows, lora_vars = _lora_rows(model, by_role)
    added = sum(row["params"] for row in rows)
    for path, layer in model_graph.iter_leaf_layers(model):
        nested = _nested_adapter_rows(path, layer, lora_vars, by_role)
        if nested:  # adapters inside a block (Houlsby placement)
            rows += nested
            added += sum(row["params"] for row in nested)
            continue
        role = _role(layer)
        trainable_here = sum(_size(v) for v in layer.trainable_weights if id(v) not in lora_vars)
        if role == "adapter":
            params = sum(_size(v) for v in layer.weights)
            added += params
            rows.append(
                {
                    "name": path,
                    "class": type(layer).__name__,
                    "role": role,
                    "params": params,
                    "trainable": trainable_here,
                }
            )
        if role in ("adapter", "normalization", "head"):
            by_role[role] += trainable_here
        elif layer.trainable and trainable_here:
            by_role["other"] += trainable_here
    return {
        "total_params": total,
        "trainable_params": trainable,
        "trainable_percent": 100.0 * trainable / max(total, 1),
        "added_params": added,
        "added_percent": 100.0 * added / max(total - added, 1),
        "by_role": by_role,
        "adapters": rows,
    }


def format_parameter_report(report, max_rows=20):
    """A markdown table of `adapter_parameter_report(model)`.

    Args:
        report: the dict returned by `adapter_parameter_report`.
        max_rows: adapter rows shown before a "... more" line.

    Returns:
        The table as a string.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> report = keras_transfer.recipes.adapter_parameter_report(adapted)
    >>> print(keras_transfer.recipes.format_parameter_report(report))
    total 100 | trainable 60 (60.00 %) | added 42 (72.41 % of the base)
    trainable by role: adapter 42, lora 0, dora 0, normalization 0, head 18, other 0
    <BLANKLINE>
    | adapter | class | params |
    | --- | --- | ---: |
    | body_adapter | BottleneckAdapter | 42 |
    """
    lines = [
        f"total {report['total_params']:,} | trainable {report['trainable_params']:,} "
        f"({report['trainable_percent']:.2f} %) | added {report['added_params']:,} "
        f"({report['added_percent']:.2f} % of the base)",
        "trainable by role: " + ", ".join(f"{k} {v:,}" for k, v in report["by_role"].items()),
        "",
        "| adapter | class | params |",
        "| --- | --- | ---: |",
    ]
    for row in report["adapters"][:max_rows]:
        lines.append(f"| {row['name']} | {row['class']} | {row['params']:,} |")
    if len(report["adapters"]) > max_rows:
        lines.append(f"| ... {len(report['adapters']) - max_rows} more | | |")
    return "\n".join(lines)
