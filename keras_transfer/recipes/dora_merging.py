"""DoRA into and out of the kernels: `merge_dora`, `get_dora_factors`, `unmerge_dora`.

`merge_dora` bakes `W' = m * V / ||V||_c` into plain Keras layers for serving (the API of
`merge_lora`); `get_dora_factors` keeps what the merge drops (`A`, `B`, `m` and the column
norms `||V||_c`, without which `W0` cannot be recovered from `W'`), and `unmerge_dora`
goes back to base kernel + factors: `W0 = ||V||_c * W' / m - (alpha / r) A B`.
"""

import keras
import numpy as np

from keras_transfer.recipes._dora_adapters import DORA_CONFIG_KEYS
from keras_transfer.recipes._dora_adapters import PLAIN_CLASSES
from keras_transfer.recipes._dora_adapters import dora_clone_function
from keras_transfer.recipes._dora_adapters import dora_layers
from keras_transfer.recipes._dora_adapters import enable_dora
from keras_transfer.recipes.lora_factors import factor_layers
from keras_transfer.utils import model_graph


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


def _check_has_dora(model):
    model_graph.check_graph_model(model)
    if not any(dora_layers(layer) for _, layer in model_graph.iter_leaf_layers(model)):
        raise ValueError(
            "`model` must have DoRA layers. Received: a model without any "
            "(use add_adapters(model, targets, kind='dora') first)."
        )


def plain_clone(layer):
    """A plain Keras clone of a DoRA layer (its config without the DoRA keys), else a config clone."""
    if type(layer) in PLAIN_CLASSES and not layer.dora_merged_save:
        config = {k: v for k, v in layer.get_config().items() if k not in DORA_CONFIG_KEYS}
        return PLAIN_CLASSES[type(layer)].from_config(config)
    return model_graph.clone_layer_from_config(layer)


def copy_merged_weights(orig, new):
    """Copies `orig`'s weights into `new` with every DoRA kernel merged and the factors dropped."""
    layers = dora_layers(orig)
    if not layers:
        model_graph.copy_weights([(new, orig)])
        return
    merged, factors = {}, set()
    for sub in layers:
        merged[id(model_graph.base_weight(sub))] = keras.ops.convert_to_numpy(sub.dora_kernel())
        factors.update({id(sub.dora_kernel_a), id(sub.dora_kernel_b), id(sub.dora_magnitude)})
    values = [
        merged[id(v)] if id(v) in merged else keras.ops.convert_to_numpy(v)
        for v in orig.weights
        if id(v) not in factors
    ]
    new.set_weights(values)


def merge_dora(model):
    """A copy of `model` with every DoRA layer merged into a plain Keras layer (`W' = m V / ||V||_c`).

    `DoRADense` / `DoRAEinsumDense` / `DoRAConv2D` become `Dense` / `EinsumDense` / `Conv2D`
    (attention projections stay the plain projections of their attention layer) whose kernel
    is the adapted one: the result has no keras_transfer layer and predicts as `model`.

    Args:
        model: a built Functional or Sequential model with DoRA layers (from
            `add_adapters(kind="dora")`); other layers are copied unchanged.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: if `model` is not a built graph model or has no DoRA layer.

    Reference:
        Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> dora = keras_transfer.recipes.add_adapters(model, "body", kind="dora", rank=2)
    >>> type(keras_transfer.recipes.merge_dora(dora).get_layer("body")).__name__
    'Dense'
    """
    _check_has_dora(model)
    new_model, pairs = model_graph.clone_graph(model, clone_layer=plain_clone)
    for new, orig in pairs:
        copy_merged_weights(orig, new)
        new.trainable = orig.trainable
    return new_model


def get_dora_factors(model):
    """The DoRA factors of every DoRA layer, to `unmerge_dora` a merged copy later.

    Args:
        model: a built Functional or Sequential model with DoRA layers.

    Returns:
        `{layer path: {"rank", "alpha", "detach_norm", "a", "b", "magnitude", "norm"}}` with
        NumPy arrays; `norm` is `||V||_c` (the magnitude's shape), which `unmerge_dora` needs.

    Raises:
        ValueError: if `model` is not a built graph model or has no DoRA layer.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> dora = keras_transfer.recipes.add_adapters(model, "body", kind="dora", rank=2)
    >>> factors = keras_transfer.recipes.get_dora_factors(dora)["body"]
    >>> factors["rank"], factors["a"].shape, factors["b"].shape, factors["magnitude"].shape
    (2, (4, 2), (2, 8), (8,))
    """
    _check_has_dora(model)
    factors = {}
    for path, layer in model_graph.iter_all_layers(model):
        if getattr(layer, "dora_enabled", False):
            norm = layer.dora_column_norm(layer.dora_direction())
            factors[path] = {
                "rank": int(layer.dora_rank),
                "alpha": float(layer.dora_alpha),
                "detach_norm": bool(layer.dora_detach_norm),
                "a": np.array(keras.ops.convert_to_numpy(layer.dora_kernel_a)),
                "b": np.array(keras.ops.convert_to_numpy(layer.dora_kernel_b)),
                "magnitude": np.array(keras.ops.convert_to_numpy(layer.dora_magnitude)),
                "norm": np.reshape(keras.ops.convert_to_numpy(norm), layer.dora_magnitude.shape),
            }
    return factors


def unmerge_dora(model, factors):
    """Back from a merged model to base kernels + DoRA factors: `W0 = ||V||_c W' / m - (alpha / r) A B`.

    Args:
        model: a model from `merge_dora` (or one of its reloaded copies).
        factors: `get_dora_factors(dora_model)`, taken before `merge_dora`.

    Returns:
        A new model with DoRA re-installed on those layers (only `A`, `B`, `m` train); its
        outputs equal `model`'s.

    Raises:
        ValueError: if `factors` is empty or names layers `model` lacks, shapes differ, or a
            magnitude is zero (its column's direction is lost in the merged kernel).

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> dora = keras_transfer.recipes.add_adapters(model, "body", kind="dora", rank=2)
    >>> factors = keras_transfer.recipes.get_dora_factors(dora)
    >>> merged = keras_transfer.recipes.merge_dora(dora)
    >>> type(keras_transfer.recipes.unmerge_dora(merged, factors).get_layer("body")).__name__
    'DoRADense'
    """
    layers = factor_layers(model, factors, "get_dora_factors")
    items = {id(layers[path]): factors[path] for path in factors}
    targets = {key: (item["rank"], item["alpha"], item["detach_norm"]) for key, item in items.items()}
    clone_layer = dora_clone_function(set(targets), model_graph.clone_layer_from_config)
    new_model, pairs = model_graph.clone_graph(model, clone_layer=clone_layer)
    model_graph.copy_weights([(new, orig) for new, orig in pairs if type(new) is type(orig)])
    for new, orig in pairs:
        new.trainable = orig.trainable
        for new_sub, orig_sub in enable_dora(new, orig, targets):
            _install_factors(new_sub, orig_sub.name, items[id(orig_sub)])
    return new_model


def _install_factors(layer, name, item):
    variables = (layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude, layer.dora_magnitude)
    for variable, key in zip(variables, ("a", "b", "magnitude", "norm")):
        if tuple(variable.shape) != np.shape(item[key]):
            raise ValueError(
                f"DoRA factor '{key}' of layer '{name}' must have shape {tuple(variable.shape)}. "
                f"Received: {np.shape(item[key])}"
            )
    magnitude = np.asarray(item["magnitude"], dtype="float64")
    if np.any(magnitude == 0):
        raise ValueError(
            f"Layer '{name}' has a zero DoRA magnitude: its merged kernel column is zero and the "
            "direction cannot be recovered. Keep the unmerged model for this layer."
        )
    base = model_graph.base_weight(layer)
    merged = _np(base)
    layer.dora_kernel_a.assign(item["a"])
    layer.dora_kernel_b.assign(item["b"])
    layer.dora_magnitude.assign(item["magnitude"])
    norm_shape = tuple(layer.dora_column_norm(base).shape)
    scale = np.reshape(np.asarray(item["norm"], dtype="float64") / magnitude, norm_shape)
    restored = merged * scale - _np(layer.dora_update())
    base.assign(restored.astype(base.dtype))
