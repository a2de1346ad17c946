"""Serving signatures of the few-shot models (`ProtoNet`, `BlackBoxLearner`).

Their `call` takes one episode batch `(support_x, support_y, query_x)` (or a dict
with those keys). The exported signature takes any number of tasks, support and
query examples, floats for the examples and the labels in the dtype clients send
(int64 class ids, as `sample_episodes` and NumPy produce them).
"""

import keras

TASK_KEYS = ("support_x", "support_y", "query_x")


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)


def recorded_input_shapes(model):
    """The input shapes recorded at the model's first call (kept in `.keras` files), or None."""
    try:
        config = model.get_build_config()
    except (AttributeError, ValueError, TypeError):
        return None
    return (config or {}).get("input_shape")


def task_input_signature(model, example_dtype, label_dtype, feature_shape=None, label_tail=None):
    """`[episode spec]` for `ExportsDeclaredInputs.serving_input_signature()`.

    Args:
        model: the few-shot model (its recorded first-call shapes are used when known).
        example_dtype, label_dtype: dtypes of the examples and of `support_y`.
        feature_shape: shape of one example, used when the model was never called.
        label_tail: shape of one label beyond `[tasks, shots]` (`()` for class ids).
    """
    shapes = recorded_input_shapes(model)
    as_dict = isinstance(shapes, dict)
    if as_dict and all(k in shapes for k in TASK_KEYS):
        shapes = [shapes[k] for k in TASK_KEYS]
    if isinstance(shapes, (list, tuple)) and len(shapes) == 3 and all(_is_shape(s) for s in shapes):
        feature_shape = tuple(shapes[0][2:])
        label_tail = tuple(shapes[1][2:])
    elif _is_shape(shapes) and shapes:
        feature_shape = tuple(shapes[1:])  # first called on plain examples
    if feature_shape is None or label_tail is None:
        raise ValueError(
            f"`{type(model).__name__}.export()` needs the shape of the episodes it serves. "
            "Received: a model never called on an episode. Call it once on "
            "(support_x, support_y, query_x), fit it, or pass `input_signature=`."
        )
    shapes = (feature_shape, label_tail, feature_shape)
    dtypes = (example_dtype, label_dtype, example_dtype)
    # Named: the inputs of the `serving_default` signature are called so.
    specs = tuple(
        keras.InputSpec(shape=(None, None) + tuple(shape), dtype=dtype, name=name)
        for shape, dtype, name in zip(shapes, dtypes, TASK_KEYS)
    )
    return [dict(zip(TASK_KEYS, specs))] if as_dict else [specs]


def declared_input(layer, default_dtype="float32"):
    """`(shape of one example, dtype)` of a model's declared `Input`; `(None, default)`
    for layers without one (subclassed models, plain layers)."""
    try:
        inputs = layer.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        return None, default_dtype
    return tuple(inputs[0].shape[1:]), keras.backend.standardize_dtype(inputs[0].dtype)


def built_input_signature(model):
    """An export signature for a model built by a call, or None.

    None for a model with a declared `Input` (Keras exports it as is) or whose
    recorded input shape is unusable (Keras's own message then); otherwise one
    `keras.InputSpec` from the shape the model was built with (any batch size).
    """
    shape, _ = declared_input(model)
    if shape is not None:
        return None
    recorded = recorded_input_shapes(model)
    if not (
        isinstance(recorded, (list, tuple)) and recorded and all(d is None or isinstance(d, int) for d in recorded)
    ):
        return None
    dtype = model.trainable_variables[0].dtype
    return [keras.InputSpec(shape=(None,) + tuple(recorded[1:]), dtype=dtype)]
