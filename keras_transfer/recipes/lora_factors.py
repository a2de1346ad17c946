"""LoRA factors out of and back into a model: `get_lora_factors` and `unmerge_lora`.

`merge_lora` (in `adapter_folding`) bakes the factors into the base weights for serving;
these two keep the factors to go back from a merged model to base weights + factors.
"""

import keras
import numpy as np

from keras_transfer.utils import model_graph


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


def lora_attrs(layer):
    """The merged-value property and the factor attributes of a LoRA layer (Keras's names).

    Args:
        layer: a LoRA-enabled `keras.layers.Dense`, `EinsumDense`, `Conv*` or `Embedding`.

    Returns:
        `(merged_name, (a_name, b_name))`: `("embeddings", ("lora_embeddings_a",
        "lora_embeddings_b"))` for an `Embedding`, else `("kernel", ("lora_kernel_a",
        "lora_kernel_b"))`.
    """
    if isinstance(layer, keras.layers.Embedding):
        return "embeddings", ("lora_embeddings_a", "lora_embeddings_b")
    return "kernel", ("lora_kernel_a", "lora_kernel_b")


def get_lora_factors(model):
    """The LoRA factors of every LoRA layer, to `unmerge_lora` a merged copy later.

    Args:
        model: a built Functional or Sequential model with LoRA layers.

    Returns:
        `{layer path: {"rank", "alpha", "a", "b"}}` with `a` and `b` as NumPy arrays.

    Raises:
        ValueError: if `model` is not a built graph model or has no LoRA-enabled layer.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> lora = keras_transfer.recipes.add_adapters(model, "body", kind="lora", rank=2)
    >>> factors = keras_transfer.recipes.get_lora_factors(lora)["body"]
    >>> factors["rank"], factors["a"].shape, factors["b"].shape
    (2, (4, 2), (2, 8))
    """
    model_graph.check_graph_model(model)
    factors = {}
    for path, layer in model_graph.iter_all_layers(model):
        if getattr(layer, "lora_enabled", False):
            _, (a_name, b_name) = lora_attrs(layer)
            factors[path] = {
                "rank": int(layer.lora_rank),
                "alpha": float(layer.lora_alpha),
                "a": np.array(keras.ops.convert_to_numpy(getattr(layer, a_name))),
                "b": np.array(keras.ops.convert_to_numpy(getattr(layer, b_name))),
            }
    if not factors:
        raise ValueError(
            "`model` must have LoRA-enabled layers. Received: a model without any "
            "(use add_adapters(model, targets, kind='lora') first)."
        )
    return factors


def factor_layers(model, factors, producer):
    """`{path: layer}` of `model`, after checking that `factors` (from `producer`) names only its layers.

    Args:
        model: a built graph model.
        factors: the dict returned by `producer` (`get_lora_factors` or `get_dora_factors`).
        producer: the name of the function that returns such factors, for the message.

    Returns:
        `{layer path: layer}` of every layer of `model`.

    Raises:
        ValueError: if `model` is not a built graph model, `factors` is not a non-empty dict, or it
            names layers `model` does not have.
    """
    model_graph.check_graph_model(model)
    if not isinstance(factors, dict) or not factors:
        raise ValueError(
            f"`factors` must be the non-empty dict returned by {producer}(). Received: factors={type(factors).__name__}"
        )
    layers = dict(model_graph.iter_all_layers(model))
    unknown = sorted(set(factors) - set(layers))
    if unknown:
        raise ValueError(
            f"`factors` names layers that `model` does not have: {unknown}. Available layers: {', '.join(layers)}"
        )
    return layers


def unmerge_lora(model, factors):
    """Back from a merged model to base weights + LoRA factors (`base = merged - (alpha / r) A B`).

    Args:
        model: a model from `merge_lora` (or one of its reloaded copies).
        factors: `get_lora_factors(lora_model)`, taken before `merge_lora`.

    Returns:
        A new model with the factors re-installed (only they train); its outputs equal `model`'s.

    Raises:
        ValueError: if `factors` is empty or names layers `model` lacks, or shapes differ.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> lora = keras_transfer.recipes.add_adapters(model, "body", kind="lora", rank=2)
    >>> factors = keras_transfer.recipes.get_lora_factors(lora)
    >>> merged = keras_transfer.recipes.merge_lora(lora)
    >>> keras_transfer.recipes.unmerge_lora(merged, factors).get_layer("body").lora_enabled
    True
    """
    layers = factor_layers(model, factors, "get_lora_factors")
    targets = {id(layers[path]): factors[path] for path in factors}
    new_model, pairs = model_graph.clone_graph(model)
    model_graph.copy_weights(pairs)
    for new, orig in pairs:
        new.trainable = orig.trainable
        couples = model_graph.paired_sublayers(new, orig)
        hits = [(n, o) for n, o in couples if id(o) in targets]
        if not hits:
            continue
        new.trainable = True  # as add_adapters(kind="lora"): only the factors train
        model_graph.train_only_lora_factors(new)  # also the variables `new` holds itself
        for sub, _ in couples[1:]:
            sub.trainable = False
        for new_sub, orig_sub in hits:
            _install_factors(new_sub, orig_sub.name, targets[id(orig_sub)])
    return new_model


def _install_factors(layer, name, item):
    if getattr(layer, "lora_enabled", False):
        raise ValueError(f"Layer '{name}' already has LoRA enabled: pass the merged model.")
    merged_name, (a_name, b_name) = lora_attrs(layer)
    merged = _np(model_graph.base_weight(layer))
    layer.enable_lora(item["rank"], lora_alpha=item["alpha"])
    a, b = getattr(layer, a_name), getattr(layer, b_name)
    if tuple(a.shape) != item["a"].shape or tuple(b.shape) != item["b"].shape:
        raise ValueError(
            f"LoRA factors for layer '{name}' must have shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}. Received: {item['a'].shape} and {item['b'].shape}"
        )
    a.assign(item["a"])
    b.assign(item["b"])
    base = model_graph.base_weight(layer)
    base.assign(np.zeros(base.shape, dtype=base.dtype))
    delta = _np(getattr(layer, merged_name))  # (alpha / r) A B, however the layer shapes it
    base.assign((merged - delta).astype(base.dtype))
    layer.trainable = True
    model_graph.train_only_lora_factors(layer)
