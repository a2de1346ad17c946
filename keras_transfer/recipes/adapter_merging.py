"""Several task adapters into one model: `task_vector`, `merge_adapters` and `combine_lora`.

An adapter trained on a frozen base changes the base's weights by a task vector
`tau = fold(adapted) - base` (for LoRA the product `(alpha / r) A B`, for DoRA and conv
adapters the folded kernel minus the base kernel, plus whatever else trained: head,
normalisation layers). `merge_adapters` merges the task vectors of several adapters weight
by weight (`keras_transfer.ops`: linear, task arithmetic, TIES) and adds the result to the
base: a plain model, nothing left to fold. `combine_lora` keeps several LoRA adapters active
at once without folding: one LoRA layer whose factors are the tasks' factors side by side.
"""

import keras
import numpy as np

from keras_transfer import ops
from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.recipes._houlsby_blocks import is_houlsby_block
from keras_transfer.recipes.adapter_folding import fold_adapters
from keras_transfer.recipes.adapter_insertion import add_adapters
from keras_transfer.recipes.lora_factors import get_lora_factors
from keras_transfer.recipes.lora_factors import lora_attrs
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation

MERGE_METHODS = ("linear", "task_arithmetic", "ties")


def _variables_by_key(model):
    """`{"<layer path>/<variable name>": variable}` for every weight of `model` (the keys of
    `get_adapter_weights`); a LoRA layer's kernel is its base variable, not the merged value."""
    out = {}
    for path, layer in model_graph.iter_leaf_layers(model):
        owner = {}
        for subpath, sub in reversed(model_graph.iter_sublayers(layer, path)):
            for variable in sub.weights:
                owner.setdefault(id(variable), subpath)
        for variable in layer.weights:
            stem = f"{owner.get(id(variable), path)}/{variable.name}"
            key, index = stem, 1
            while key in out:
                index += 1
                key = f"{stem}_{index}"
            out[key] = variable
    return out


def _float_values(model):
    return {
        key: np.asarray(keras.ops.convert_to_numpy(v), dtype="float64")
        for key, v in _variables_by_key(model).items()
        if keras.backend.standardize_dtype(v.dtype).startswith("float")
    }


def adapter_kind(model):
    """The kind of adapters in `model`, as `add_adapters` names them ("none" for a plain model).

    Args:
        model: a built Functional or Sequential model.

    Returns:
        "lora", "dora", "conv_series", "conv_parallel", "houlsby" or "bottleneck" (sorted and
        joined by "+" when several kinds are present), or "none" (e.g. a fully fine-tuned model).

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> keras_transfer.recipes.adapter_kind(keras_transfer.recipes.add_adapters(model, "body", kind="lora"))
    'lora'
    """
    model_graph.check_graph_model(model)
    kinds = set()
    for _, layer in model_graph.iter_all_layers(model):
        if getattr(layer, "lora_enabled", False):
            kinds.add("lora")
        elif getattr(layer, "dora_enabled", False):
            kinds.add("dora")
        elif isinstance(layer, ConvAdapter):
            kinds.add(f"conv_{layer.mode}")
        elif isinstance(layer, BottleneckAdapter):
            kinds.add("bottleneck")
        elif is_houlsby_block(layer):
            kinds.add("houlsby")
    return "+".join(sorted(kinds)) or "none"


def task_vector(base_model, adapted_model, name="adapted_model"):
    """The task vector of an adapted model: `{weight key: fold(adapted) - base}` in float64.

    The adapters are folded first (`fold_adapters`: LoRA gives `(alpha / r) A B`, DoRA its merged
    kernel, conv adapters their folded kernels), so the deltas live in the base's weights, one
    per floating-point weight of `base_model` (zero where nothing trained). Save one with
    `np.savez(path, **vector)` and pass the loaded dict to `merge_adapters`.

    Args:
        base_model: the model the adapter was added to (`add_adapters(base_model, ...)`).
        adapted_model: the trained adapted model (or a fully fine-tuned copy of `base_model`).
        name: the argument name used in error messages.

    Returns:
        A dict `{"<layer path>/<variable name>": np.ndarray}` with the shapes of `base_model`.

    Raises:
        ValueError: if a model is not a built graph model, `adapted_model` holds bottleneck
            adapters (a non-linearity: no weight delta) or an adapter that does not fold exactly,
            or its folded weights do not match `base_model`'s (names or shapes).

    Reference:
        Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> lora = keras_transfer.recipes.add_adapters(model, "body", kind="lora", rank=2)
    >>> vector = keras_transfer.recipes.task_vector(model, lora)
    >>> sorted((key, value.shape) for key, value in vector.items())
    [('body/bias', (8,)), ('body/kernel', (4, 8))]
    """
    model_graph.check_graph_model(base_model, "base_model")
    model_graph.check_graph_model(adapted_model, name)
    if "bottleneck" in adapter_kind(adapted_model):
        raise ValueError(
            f"`{name}` must hold adapters that fold into the weights (LoRA, DoRA, conv, linear Houlsby). "
            f"Received: {name} with BottleneckAdapter layers, whose non-linearity is no weight delta. "
            "Serve such adapters separately (set_adapter_weights switches tasks)."
        )
    base = _float_values(base_model)
    folded = _float_values(fold_adapters(adapted_model))
    return {key: folded[key] - value for key, value in _checked(base, folded, name).items()}


def _checked(base, vector, name):
    """`base` after checking that `vector` has its keys, shapes and finite values (`{key: array}` dicts)."""
    missing, unexpected = sorted(set(base) - set(vector)), sorted(set(vector) - set(base))
    if missing or unexpected:
        raise ValueError(
            f"`{name}` must have the weights of `base_model`. Received: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}. Pass adapters added to this base model (add_adapters(base_model, ...))."
        )
    for key, value in base.items():
        if np.shape(vector[key]) != value.shape:
            raise ValueError(
                f"`{name}` must have the weight shapes of `base_model`. Received: '{key}' of shape "
                f"{np.shape(vector[key])}, expected {value.shape}. Merge adapters of one base model only."
            )
        if not np.all(np.isfinite(vector[key])):
            raise ValueError(
                f"`{name}` must hold finite weights. Received: NaN or infinite values in '{key}'. "
                "Retrain that adapter (a lower learning rate) or leave it out of the merge."
            )
    return base


def _task_vectors(base_model, adapters, name="adapters"):
    if not isinstance(adapters, (list, tuple)) or not adapters:
        raise ValueError(
            f"`{name}` must be a non-empty list of adapted models or task vectors (dicts from "
            f"task_vector). Received: {name}={adapters!r}"
        )
    kinds = {}
    vectors = []
    base = _float_values(base_model)
    for i, adapter in enumerate(adapters):
        if isinstance(adapter, keras.Model):
            kinds[i] = adapter_kind(adapter)
            vectors.append(task_vector(base_model, adapter, name=f"{name}[{i}]"))
        elif isinstance(adapter, dict) or hasattr(adapter, "files"):
            vector = {key: np.asarray(adapter[key], dtype="float64") for key in adapter}
            vectors.append({key: vector[key] for key in _checked(base, vector, f"{name}[{i}]")})
        else:
            raise ValueError(
                f"`{name}[{i}]` must be an adapted keras.Model or a task vector dict. "
                f"Received: {name}[{i}] of type {type(adapter).__name__}"
            )
    if len(set(kinds.values())) > 1:
        raise ValueError(
            f"`{name}` must all be of one kind. Received: kinds "
            f"{[kinds.get(i, 'task vector') for i in range(len(adapters))]}. Merge adapters of one kind "
            "(or pass task_vector(...) dicts to merge deltas of any origin)."
        )
    return base, vectors


def merge_adapters(base_model, adapters, method="linear", weights=None, density=0.2, scale=1.0):
    """One plain model from several task adapters: `base + merge(task vectors)`, weight by weight.

    - "linear": `sum_t w_t tau_t`, `w_t` = `weights` (default `1 / T`: the average);
    - "task_arithmetic": `scale * sum_t w_t tau_t` (default `w_t = 1`; Ilharco et al. tune
      `scale` on held-out data);
    - "ties": `scale * disjoint_mean(w_t trim(tau_t, density))` (Yadav et al.: trim each task
      vector to its top-`density` magnitudes, elect each entry's sign by the summed mass, average
      the agreeing entries; default `w_t = 1`, `scale = 1`, `density = 0.2`).

    LoRA deltas are merged as products `(alpha / r) A B`, not factor by factor. The result has
    `base_model`'s layers and weight shapes with the merged deltas folded in: it saves to
    `.keras`, exports and serves as any Keras model, with no adapter layer.

    Args:
        base_model: the frozen base the adapters were added to; not modified.
        adapters: a list of adapted models (`add_adapters(base_model, ...)`, trained) of one kind,
            or of task vectors (`task_vector(base_model, adapted)`, e.g. reloaded with `np.load`).
        method: "linear", "task_arithmetic" or "ties".
        weights: one number per adapter, or None (the method's default).
        density: the fraction each task vector keeps in "ties", in (0, 1].
        scale: `lambda` for "task_arithmetic" and "ties".

    Returns:
        A new `keras.Model` (recompile it before `fit`).

    Raises:
        ValueError: if `adapters` is empty, mixes kinds, or holds an adapter of another base
            (names or shapes); `weights` does not have one number per adapter; `density` is
            outside (0, 1]; or `method` is unknown.

    Reference:
        Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023; Yadav et al.,
        "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.

    Example:
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> tasks = [keras_transfer.recipes.add_adapters(base, "body", kind="lora", rank=2) for _ in range(2)]
    >>> _ = tasks[0].get_layer("body").lora_kernel_b.assign(np.ones((2, 8)))
    >>> merged = keras_transfer.recipes.merge_adapters(base, tasks, method="linear")
    >>> [type(layer).__name__ for layer in merged.layers]
    ['InputLayer', 'Dense']
    >>> lora_delta = tasks[0].get_layer("body").kernel - base.get_layer("body").kernel  # (alpha / r) A B
    >>> merged_delta = merged.get_layer("body").kernel - base.get_layer("body").kernel
    >>> bool(np.allclose(merged_delta, lora_delta / 2, atol=1e-6))
    True
    """
    model_graph.check_graph_model(base_model, "base_model")
    validation.check_one_of("method", method, MERGE_METHODS)
    density = validation.check_fraction(
        "density", density, inclusive_low=False, inclusive_high=True, fix="It is the fraction of entries kept"
    )
    scale = validation.check_finite_float("scale", scale)
    count = len(adapters) if isinstance(adapters, (list, tuple)) else 0
    if weights is not None and (np.ndim(weights) != 1 or len(weights) != count):
        raise ValueError(
            f"`weights` must hold one number per adapter ({count}). Received: weights={weights!r}. "
            "Give one weight per adapter, or None."
        )
    base, vectors = _task_vectors(base_model, adapters)
    merged = {}
    for key, value in base.items():
        deltas = [vector[key] for vector in vectors]
        if method == "linear":
            delta = ops.linear_merge(deltas, weights)
        elif method == "task_arithmetic":
            delta = ops.task_arithmetic(deltas, scale, weights)
        else:
            delta = ops.ties_merge(deltas, density, scale, weights)
        merged[key] = value + keras.ops.convert_to_numpy(delta)
    return _model_with(base_model, merged)


def _model_with(base_model, values):
    """A clone of `base_model` whose floating-point weights are `values` (`{key: array}`)."""
    new_model, pairs = model_graph.clone_graph(base_model)
    model_graph.copy_weights(pairs)
    for new, orig in pairs:
        new.trainable = orig.trainable
    for key, variable in _variables_by_key(new_model).items():
        if key in values:
            variable.assign(values[key].astype(variable.dtype))
    return new_model


def combine_lora(base_model, lora_models, weights=None):
    """Several LoRA adapters active at once, weighted, unfolded: their factors side by side.

    Each LoRA layer of the result has rank `R = sum_t r_t` and factors
    `A = [A_1 ... A_T]`, `B = [w_1 (alpha_1 / r_1) B_1; ...; w_T (alpha_T / r_T) B_T]`
    (`lora_alpha = R`), so its kernel is `W + sum_t w_t (alpha_t / r_t) A_t B_t` at every call:
    the weighted sum of the tasks' deltas, computed at inference (PEFT's
    `add_weighted_adapter(combination_type="cat")`). The other weights are
    `base + sum_t w_t (theta_t - base)` (a head trained with the adapters, say). Only the
    combined factors train: fine-tune the mixture, or fold it with `merge_lora`.

    Args:
        base_model: the base the LoRA adapters were added to; not modified.
        lora_models: a non-empty list of models from `add_adapters(base_model, ..., kind="lora")`
            with LoRA on the same layers, each with one rank throughout.
        weights: one number per model, or None (1 each: every adapter at full strength).

    Returns:
        A new `keras.Model` with LoRA-enabled layers (recompile it before `fit`).

    Raises:
        ValueError: if `lora_models` is empty, holds a model that is not LoRA-adapted from
            `base_model`, the models adapt different layers, or `weights` has the wrong length.

    Reference:
        Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.

    Example:
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> tasks = [keras_transfer.recipes.add_adapters(base, "body", kind="lora", rank=2) for _ in range(3)]
    >>> both = keras_transfer.recipes.combine_lora(base, tasks, weights=[0.5, 0.3, 0.2])
    >>> both.get_layer("body").lora_rank
    6
    """
    _task_vectors(base_model, lora_models, "lora_models")  # checks the list, the base and the kinds
    count = len(lora_models)
    weights = np.ones(count) if weights is None else np.asarray(weights, dtype="float64")
    if weights.ndim != 1 or len(weights) != count:
        raise ValueError(f"`weights` must hold one number per model ({count}). Received: weights={weights!r}")
    factors = []
    for i, model in enumerate(lora_models):
        if adapter_kind(model) != "lora":
            raise ValueError(
                f"`lora_models[{i}]` must be LoRA-adapted (add_adapters(base_model, ..., kind='lora')). "
                f"Received: a model of kind '{adapter_kind(model)}'. Use merge_adapters for other kinds."
            )
        factors.append(get_lora_factors(model))
    paths = [sorted(f) for f in factors]
    ranks = {int(sum(f[path]["rank"] for f in factors)) for path in paths[0]} if paths.count(paths[0]) == count else {}
    if len(ranks) != 1:
        raise ValueError(
            "`lora_models` must have LoRA on the same layers, one rank per model. Received: layers "
            f"{paths}. Adapt the same targets with add_adapters for every task."
        )
    layers = dict(model_graph.iter_all_layers(base_model))
    target_ids = {id(layers[path]) for path in paths[0]}
    rank = ranks.pop()
    combined = add_adapters(
        base_model,
        lambda layer: id(layer) in target_ids,
        kind="lora",
        rank=rank,
        lora_alpha=rank,
        trainable_layers=None,
    )
    base = _float_values(base_model)
    trained = [_float_values(model) for model in lora_models]  # LoRA layers: the base kernel variable
    for key, variable in _variables_by_key(combined).items():
        if key in base:  # the base kernels and any other weight: base + sum_t w_t delta_t
            delta = sum(w * (values[key] - base[key]) for w, values in zip(weights, trained))
            variable.assign((base[key] + delta).astype(variable.dtype))
    for path, layer in model_graph.iter_all_layers(combined):
        if path in factors[0]:
            items = [f[path] for f in factors]
            a = np.concatenate([item["a"] for item in items], axis=-1)
            b = np.concatenate(
                [w * item["alpha"] / item["rank"] * item["b"] for w, item in zip(weights, items)], axis=0
            )
            variable_a, variable_b = (getattr(layer, name) for name in lora_attrs(layer)[1])
            variable_a.assign(a.astype(variable_a.dtype))
            variable_b.assign(b.astype(variable_b.dtype))
    return combined
