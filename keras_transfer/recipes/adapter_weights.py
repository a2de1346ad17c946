"""One small weight file per task on one shared, frozen backbone.

`get_adapter_weights` / `set_adapter_weights` / `save_adapter_weights` /
`load_adapter_weights` read and write the task-specific state of a model from
`add_adapters` (adapters, LoRA / DoRA factors, trainable normalisation layers, head) and switch
the active task by assigning variables: no rebuild, no retrace.
"""

import keras
import numpy as np

from keras_transfer.utils import model_graph


def _task_variables(model):
    """`{key: variable}`: every trainable layer's trainable weights, plus normalisation statistics."""
    out = {}
    for path, layer in model_graph.iter_leaf_layers(model):
        if not layer.trainable:
            continue
        variables = list(layer.trainable_weights)
        if isinstance(layer, model_graph.NORMALIZATION_LAYERS):
            known = {id(v) for v in variables}
            variables += [v for v in layer.non_trainable_weights if id(v) not in known]
        owner = {}
        for subpath, sub in reversed(model_graph.iter_sublayers(layer, path)):
            for variable in sub.weights:
                owner.setdefault(id(variable), subpath)
        for variable in variables:
            key = f"{owner.get(id(variable), path)}/{variable.name}"
            index = 1
            while key in out:
                index += 1
                key = f"{owner.get(id(variable), path)}/{variable.name}_{index}"
            out[key] = variable
    return out


def get_adapter_weights(model):
    """The task-specific state of an adapted model: `{key: np.ndarray}`.

    Keys are `"<layer path>/<variable name>"` for the adapters, LoRA / DoRA factors, trainable
    normalisation layers (with their moving statistics) and the head: everything that
    differs between two tasks sharing the frozen backbone.

    LoRA caveat: Keras writes a LoRA layer to `.keras` with the factors merged into the base
    kernel (and zero factors), so per-task LoRA weights belong in a model adapted from the
    original base (`add_adapters(base, ..., kind="lora")`), not in a reloaded `.keras` file
    of another task. DoRA layers nested in a block (attention projections) write their merged
    kernel likewise; top-level `DoRADense` / `DoRAConv2D` / `DoRAEinsumDense` layers keep their
    factors and magnitudes in `.keras` files. Bottleneck / conv adapters have no such caveat.

    Args:
        model: a Functional or Sequential model (typically from `add_adapters`).

    Returns:
        A dict `{key: np.ndarray}`.

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> weights = keras_transfer.recipes.get_adapter_weights(adapted)
    >>> sorted((key, value.shape) for key, value in weights.items())[:3]
    [('body_adapter/down_bias', (2,)), ('body_adapter/down_kernel', (8, 2)), ('body_adapter/up_bias', (8,))]
    """
    model_graph.check_graph_model(model)
    return {key: np.array(keras.ops.convert_to_numpy(v)) for key, v in _task_variables(model).items()}


def set_adapter_weights(model, weights):
    """Assigns task weights from `get_adapter_weights` (switches the active task in place).

    Only variables are assigned: compiled / traced functions keep working, nothing is
    rebuilt.

    Args:
        model: the adapted model.
        weights: a dict from `get_adapter_weights` of a model adapted the same way.

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model, or
            `weights` has missing, unexpected or mis-shaped entries (the message
            names them).

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> weights = keras_transfer.recipes.get_adapter_weights(adapted)
    >>> zeros = {key: np.zeros_like(value) for key, value in weights.items()}
    >>> keras_transfer.recipes.set_adapter_weights(adapted, zeros)
    >>> float(np.abs(adapted(np.ones((1, 4)))).sum())
    0.0
    """
    model_graph.check_graph_model(model)
    variables = _task_variables(model)
    missing = sorted(set(variables) - set(weights))
    unexpected = sorted(set(weights) - set(variables))
    if missing or unexpected:
        raise ValueError(
            "`weights` must hold exactly the task weights of this model. Received: missing "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}. Were they saved from a "
            "model adapted with the same targets and kind?"
        )
    for key, variable in variables.items():
        value = np.asarray(weights[key])
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Task weight '{key}' must have shape {tuple(variable.shape)}. Received: shape "
                f"{tuple(value.shape)}. Heads of different sizes need separate models."
            )
    for key, variable in variables.items():
        variable.assign(np.asarray(weights[key]).astype(variable.dtype))


def save_adapter_weights(model, path):
    """Writes only the task weights (adapters, LoRA, norms, head) to an `.npz` file.

    Args:
        model: the adapted model.
        path: the file to write; must end with ".npz".

    Returns:
        `path` as a string.

    Raises:
        ValueError: if `path` does not end with ".npz", or as `get_adapter_weights`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> keras_transfer.recipes.save_adapter_weights(adapted, "task_a.npz")
    'task_a.npz'
    """
    path = str(path)
    if not path.endswith(".npz"):
        raise ValueError(f"`path` must end with '.npz'. Received: path={path!r}")
    weights = get_adapter_weights(model)
    np.savez(path, **weights)
    return path


def load_adapter_weights(model, path):
    """Loads a file written by `save_adapter_weights` into `model` (task switch).

    Args:
        model: a model adapted as the one the file was saved from.
        path: the ".npz" file.

    Returns:
        `model`.

    Raises:
        ValueError: as `set_adapter_weights`, when the file does not match `model`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> path = keras_transfer.recipes.save_adapter_weights(adapted, "task_a.npz")
    >>> keras_transfer.recipes.load_adapter_weights(adapted, path) is adapted
    True
    """
    with np.load(str(path)) as data:
        weights = {key: data[key] for key in data.files}
    set_adapter_weights(model, weights)
    return model
