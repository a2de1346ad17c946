"""Keras model-graph plumbing: layer walkers, matchers, graph cloning and weight copying.

This is the one module of keras_transfer that touches Keras private API. Keras has
no public way to ask which layer produced a tensor, to list a functional model's
nodes, to walk the layers nested inside a layer, to tell a Functional model from a
subclassed one, or to reach the variable under a LoRA-enabled kernel, so the
recipes read these here:

| private name | what it gives |
| --- | --- |
| `keras.src.models.functional.Functional` | `isinstance` check for functional models |
| `Layer._inbound_nodes` | where a layer was called (`operation`, `input_tensors`, `outputs`, `parent_nodes`) |
| `KerasTensor._keras_history` | the operation that produced a symbolic tensor |
| `Functional._nodes_by_depth` | every node of a functional graph |
| `Layer._flatten_layers`, `Layer._layers` | layers nested inside a layer (attention projections) |
| `Dense/EinsumDense/Conv._kernel`, `Embedding._embeddings` | the base variable under a LoRA-enabled layer |
| `Layer._tracker` | lets a built layer add variables (DoRA on built attention projections) |
| `keras.Variable._value` | the backend (`tf.Variable`) variable under a Keras variable |
| `Model._distribute_strategy` | the strategy whose scope created a model |
| `Model._compile_loss` | the loss `compile` built |
| `Model._symbolic_build` | what `fit` builds before its first step |
| `BatchNormalization._moments`, `._reduction_axes` | the batch-moments hook of BatchNorm |
| `keras.src.utils.file_utils.get_file` | the function `keras.applications` downloads weights through |

A Keras upgrade that renames one of these breaks this file only; `tests/utils/test_model_graph.py` pins each.

Layer paths join model names with "/" (e.g. "backbone/conv1"); the outer model's
name is left out.
"""

import contextlib
import re
import types

import keras

NORMALIZATION_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
    if hasattr(keras.layers, name)
)


# --------------------------------------------------------------------------- walkers
def iter_layers(model):
    """Yields every layer nested in `model` (depth first, each once, `model` excluded)."""
    seen = set()
    stack = list(getattr(model, "layers", None) or [])[::-1]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(list(getattr(layer, "layers", None) or [])[::-1])


def iter_models(model):
    """Yields `model` and every `keras.Model` nested in it, parents first."""
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_models(layer)


def iter_functional_models(model):
    """Yields the Functional models among `model` and the models nested in it, parents first."""
    for sub in iter_models(model):
        if is_functional(sub):
            yield sub


def iter_leaf_layers(model, prefix=""):
    """Yields `(path, layer)` for every non-model layer, descending into nested models.

    Input layers are left out.
    """
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from iter_leaf_layers(layer, prefix=f"{path}/")
        elif isinstance(layer, keras.layers.InputLayer):
            continue
        else:
            yield path, layer


def iter_sublayers(layer, prefix):
    """`[(path, sublayer)]` of the layers nested inside a leaf layer, parents before children.

    E.g. the `query` EinsumDense of a MultiHeadAttention at path `f"{prefix}/query"`.
    Keras has no public walker for these.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    out = []
    for sub in flatten(include_self=False, recursive=True):
        parent = next((p for p in reversed(out) if sub in getattr(p[1], "_layers", [])), None)
        base = parent[0] if parent else prefix
        out.append((f"{base}/{sub.name}", sub))
    return out


def iter_all_layers(model):
    """Yields leaf layers and their nested sublayers, as `(path, layer)`."""
    for path, layer in iter_leaf_layers(model):
        yield path, layer
        yield from iter_sublayers(layer, path)


def layer_and_sublayers(layer):
    """`[layer, *its nested sublayers]`, parents before children."""
    return [layer] + [sub for _, sub in iter_sublayers(layer, "")]


def paired_sublayers(new, orig):
    """`[(new, orig), ...]` pairing a cloned layer's nested sublayers with the original's."""
    return list(zip(layer_and_sublayers(new), layer_and_sublayers(orig)))


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` in `model`, nested models included, in order."""
    return [layer for layer in [model, *iter_layers(model)] if isinstance(layer, keras.layers.BatchNormalization)]


def lora_layers(layer):
    """The LoRA-enabled layers among `layer` and its nested sublayers."""
    return [sub for sub in layer_and_sublayers(layer) if getattr(sub, "lora_enabled", False)]


def train_only_lora_factors(layer):
    """Marks every trainable variable of `layer` but its LoRA factors as non-trainable."""
    for variable in layer.trainable_weights:
        if "lora" not in variable.name:
            variable.trainable = False


# --------------------------------------------------------------------------- matchers
def is_functional(model):
    """Whether `model` is a Functional model (a Sequential one is not)."""
    from keras.src.models.functional import Functional  # the public API has no isinstance check

    return isinstance(model, Functional)


def check_graph_model(model, name="model"):
    """Raises a ValueError unless `model` is a built Functional or Sequential `keras.Model`.

    Those are the models whose layer graph `clone_graph` can re-run.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`{name}` must be a keras.Model. Received: {name} of type {type(model).__name__}")
    if isinstance(model, keras.Sequential) or is_functional(model):
        if not model.built or not getattr(model, "inputs", None):
            raise ValueError(
                f"`{name}` must be built with known inputs. Received: an unbuilt "
                f"{type(model).__name__}. Give it an `Input` (or call `build`) first."
            )
        return
    raise ValueError(
        f"`{name}` must be a Functional or Sequential keras.Model (adapters are inserted by "
        f"re-running its layer graph). Received: a subclassed {type(model).__name__}. "
        "Rebuild it with the functional API, or add the adapter layers in its `call`."
    )


def _describe_targets(targets):
    if isinstance(targets, (list, tuple)):
        return "[" + ", ".join(_describe_targets(t) for t in targets) + "]"
    if isinstance(targets, type):
        return targets.__name__
    if isinstance(targets, str):
        return repr(targets)
    return getattr(targets, "__name__", repr(targets))


def layer_matcher(targets, argname="targets"):
    """A predicate `fn(layer) -> bool` from `targets`.

    Args:
        targets: a regex (full match on the layer name), a layer class, a predicate
            `fn(layer) -> bool`, or a list of these (any may match).
        argname: the argument name used in error messages.

    Returns:
        The predicate.
    """
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise ValueError(
            f"`{argname}` must name at least one layer pattern, class or predicate. Received: {argname}=[]"
        )
    checks = []
    for item in items:
        if isinstance(item, str):
            try:
                pattern = re.compile(item)
            except re.error as error:
                raise ValueError(
                    f"`{argname}` holds an invalid regular expression {item!r} ({error}). "
                    f"Received: {argname}={targets!r}"
                ) from None
            checks.append(lambda layer, p=pattern: p.fullmatch(layer.name) is not None)
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            checks.append(lambda layer, c=item: isinstance(layer, c))
        elif callable(item) and not isinstance(item, type):
            checks.append(lambda layer, f=item: bool(f(layer)))
        else:
            raise ValueError(
                f"`{argname}` must be layer-name regexes, keras Layer classes or predicates "
                f"`fn(layer) -> bool`. Received: {argname}={targets!r}"
            )
    return lambda layer: any(check(layer) for check in checks)


def _available_names(model, limit=60, sublayers=False):
    walker = iter_all_layers if sublayers else iter_leaf_layers
    names = [path for path, _ in walker(model)]
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def find_layers(model, targets, argname="targets", sublayers=False):
    """`[(path, layer)]` of leaf layers matching `targets` (see `layer_matcher`).

    With `sublayers=True` the layers nested inside leaf layers (attention projections)
    count too. Raises a ValueError listing the available names if none matches.
    """
    matcher = layer_matcher(targets, argname)
    walker = iter_all_layers if sublayers else iter_leaf_layers
    found = [(path, layer) for path, layer in walker(model) if matcher(layer)]
    if not found:
        raise ValueError(
            f"`{argname}` matches no layer of the model. Received: {argname}={_describe_targets(targets)}. "
            f"Patterns are full-match regexes on layer names; available layers: "
            f"{_available_names(model, sublayers=sublayers)}"
        )
    return found


# --------------------------------------------------------------------------- graph nodes
def inbound_nodes(layer):
    """The graph nodes where `layer` was called (one per call), as a list.

    Each node has `operation`, `input_tensors`, `outputs` and `parent_nodes`.
    """
    return list(getattr(layer, "_inbound_nodes", None) or [])


def tensor_producer(tensor):
    """The layer (or operation) whose call produced the symbolic `tensor`."""
    return tensor._keras_history.operation


def graph_nodes(model):
    """Every node of a Functional model's graph (input nodes included)."""
    return [node for depth in model._nodes_by_depth.values() for node in depth]


def chain_layers(model):
    """The layers of `model` in order if it is a single-input single-output chain, else None."""
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    if not is_functional(model):
        return None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = None
    for layer in layers:
        nodes = inbound_nodes(layer)
        if len(nodes) != 1:
            return None
        parents = nodes[0].parent_nodes
        if previous is None:
            if parents and not all(isinstance(p.operation, keras.layers.InputLayer) for p in parents):
                return None
        elif len(parents) != 1 or parents[0].operation is not previous:
            return None
        previous = layer
    if previous is None or tensor_producer(model.outputs[0]) is not previous:
        return None
    return layers


# --------------------------------------------------------------------------- cloning
def clone_layer_from_config(layer):
    """A new, unbuilt layer of the same class and config as `layer` (no weights)."""
    return layer.__class__.from_config(layer.get_config())


def as_functional(model):
    """A Functional model over the same layers as a Sequential one (top level only)."""
    if not isinstance(model, keras.Sequential):
        return model
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def clone_graph(model, clone_layer=None, call_layer=None):
    """Rebuilds a functional model (nested functional models included) via `clone_model`.

    Args:
        model: a built Functional or Sequential model.
        clone_layer: `clone_layer(layer) -> new layer` (default: `clone_layer_from_config`).
        call_layer: `call_layer(new, orig, *args, **kwargs)` calls the clone (default:
            `new(*args, **kwargs)`).

    Returns:
        `(new_model, pairs)` with `pairs` a list of `(new_layer, original_layer)` for every
        cloned leaf layer. Weights are not copied (see `copy_weights`).
    """
    pairs = []
    new_to_orig = {}

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless keras.ops operation: reuse it
        new = clone_layer(layer) if clone_layer is not None else clone_layer_from_config(layer)
        pairs.append((new, layer))
        new_to_orig[id(new)] = layer
        return new

    def call_function(layer, *args, **kwargs):
        orig = new_to_orig.get(id(layer))
        if call_layer is None or orig is None:
            return layer(*args, **kwargs)
        return call_layer(layer, orig, *args, **kwargs)

    # Keras's own graph re-execution (nested Functional models included, recursive=True);
    # nested Sequential models are cloned without call_function (Keras's rule).
    new_model = keras.models.clone_model(
        as_functional(model), clone_function=clone_function, call_function=call_function, recursive=True
    )
    return new_model, pairs


def copy_weights(pairs):
    """Copies each original layer's weights into its clone, for `(new, orig)` pairs."""
    for new, orig in pairs:
        if orig.weights:
            new.set_weights(orig.get_weights())


# --------------------------------------------------------------------------- variables
def base_weight(layer):
    """The kernel (embeddings for `Embedding`) variable of a layer that supports LoRA.

    On a LoRA-enabled layer the public `kernel` is the merged value `W + (alpha / r) A B`;
    this is the variable `W` itself.
    """
    embedding = isinstance(layer, keras.layers.Embedding)
    variable = getattr(layer, "_embeddings" if embedding else "_kernel", None)
    if variable is None:
        return layer.embeddings if embedding else layer.kernel
    return variable


def add_variables_after_build(layer, create):
    """Runs `create()` with the built `layer` open to new variables (`Layer._tracker`), as `enable_lora`."""
    layer._tracker.unlock()
    create()
    layer._tracker.lock()


def backend_variable(variable):
    """The backend variable (e.g. a `tf.Variable`, mirrored under a strategy) under a Keras one."""
    return getattr(variable, "_value", variable)


# --------------------------------------------------------------------------- training internals
def distribute_strategy(model):
    """The `tf.distribute` strategy whose scope created `model` (None: created outside any)."""
    return getattr(model, "_distribute_strategy", None)


def compiled_loss(model):
    """The loss object `model.compile(loss=...)` built, or None when not compiled with a loss."""
    return getattr(model, "_compile_loss", None)


def symbolic_build(model, data_batch):
    """What `Model.fit` builds before its first step, from a symbolic batch.

    Builds the model, its compiled loss and metrics from `data_batch` (a structure of `keras.KerasTensor`s);
    does nothing on a Keras without this step.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=data_batch)


def override_batchnorm_moments(layer, moments):
    """Makes one BatchNormalization instance compute batch moments with `moments(x, axes)`.

    Masked or synchronized calls keep Keras's moments. The override lives on the
    instance (it is not saved). Returns whether it was installed (False when `layer`
    is not a BatchNormalization with Keras's moments hook).
    """
    if not isinstance(layer, keras.layers.BatchNormalization) or not hasattr(type(layer), "_moments"):
        return False

    def batch_moments(self, inputs, mask):
        if mask is not None or getattr(self, "synchronized", False):
            return type(self)._moments(self, inputs, mask)
        return moments(inputs, self._reduction_axes)

    object.__setattr__(layer, "_moments", types.MethodType(batch_moments, layer))
    return True


# --------------------------------------------------------------------------- keras-hub
def merge_padding_and_attention_mask(inputs, padding_mask, attention_mask):
    """keras-hub's own merge of a padding mask, an attention mask and the Keras mask of `inputs`.

    keras-hub's `TransformerEncoder` merges its masks with this function, which keras-hub
    does not export; a block that re-implements the encoder's `call` must merge alike.
    Needs keras-hub (an optional extra).
    """
    from keras_hub.src.layers.modeling.transformer_layer_utils import merge_padding_and_attention_mask as merge

    return merge(inputs, padding_mask, attention_mask)


# --------------------------------------------------------------------------- downloads
@contextlib.contextmanager
def wrapped_get_file(wrapper):
    """Inside the block, `keras.applications` downloads through `wrapper(get_file)`.

    `wrapper` receives Keras's `get_file` and returns the function to use in its place
    (same signature). Yields True, or False when this Keras has no such module (the
    downloads then run unwrapped). Keras's function is restored on exit.
    """
    try:
        from keras.src.utils import file_utils  # the module keras.applications downloads through
    except ImportError:  # pragma: no cover - another layout: leave the downloads alone
        yield False
        return
    original = file_utils.get_file
    file_utils.get_file = wrapper(original)
    try:
        yield True
    finally:
        file_utils.get_file = original
