"""Put adapters (bottleneck, 1x1 conv in series / parallel, Keras LoRA) into a built model.

The pretrained model stays untouched (seed 002, §19.2.2): `add_adapters` rebuilds the
functional graph with `keras.models.clone_model(recursive=True, clone_function=...,
call_function=...)` (Keras's own graph re-execution, nested backbones included), copies
every original weight, freezes the original layers and leaves trainable only the
adapters, the normalisation parameters and the head. `adapter_parameter_report` counts
what trains; `get_adapter_weights` / `set_adapter_weights` / `save_adapter_weights` /
`load_adapter_weights` keep one small weight file per task on one shared backbone and
switch the active task by assigning variables (no rebuild, no retrace).
"""

import re

import keras
import numpy as np

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.layers.frozen_batch_normalization import FrozenBatchNormalization
from keras_transfer.utils import validation

ADAPTER_KINDS = ("bottleneck", "conv_series", "conv_parallel", "lora")

NORMALIZATION_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
    if hasattr(keras.layers, name)
)

_CONV_LIKE = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
)


# --------------------------------------------------------------------------- graph helpers
def iter_leaf_layers(model, prefix=""):
    """Yields `(path, layer)` for every non-model layer, descending into nested models.

    The path joins model names with "/" (e.g. "backbone/conv1"); the outer model's name is
    left out.
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
    """`(path, sublayer)` for the layers nested inside a leaf layer (e.g. a MultiHeadAttention's
    `query` EinsumDense), parents before children. Keras has no public walker for these."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    out, paths = [], {id(layer): prefix}
    for sub in flatten(include_self=False, recursive=True):
        parent = next((p for p in reversed(out) if sub in getattr(p[1], "_layers", [])), None)
        base = parent[0] if parent else prefix
        path = f"{base}/{sub.name}"
        paths[id(sub)] = path
        out.append((path, sub))
    return out


def iter_all_layers(model):
    """Leaf layers and their nested sublayers, as `(path, layer)`."""
    for path, layer in iter_leaf_layers(model):
        yield path, layer
        yield from iter_sublayers(layer, path)


def _check_model(model, name="model"):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{name}` must be a keras.Model. Received: {name} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential) or _is_functional(model):
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


def _is_functional(model):
    from keras.src.models.functional import Functional  # the public API has no isinstance check

    return isinstance(model, Functional)


def _as_functional(model):
    """A Functional model over the same layers as a Sequential one (top level only)."""
    if not isinstance(model, keras.Sequential):
        return model
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _describe_targets(targets):
    if isinstance(targets, (list, tuple)):
        return "[" + ", ".join(_describe_targets(t) for t in targets) + "]"
    if isinstance(targets, type):
        return targets.__name__
    if isinstance(targets, str):
        return repr(targets)
    return getattr(targets, "__name__", repr(targets))


def _compile_matcher(targets, argname="targets"):
    """`targets`: a regex (full match on the layer name), a layer class, a predicate, or a list."""
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
                    f"`{argname}` holds an invalid regular expression {item!r} ({error}). Received: {argname}={targets!r}"
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
    """`[(path, layer)]` of leaf layers matching `targets`; a ValueError listing the names if none.

    With `sublayers=True` the layers nested inside leaf layers (attention projections) count too.
    """
    matcher = _compile_matcher(targets, argname)
    walker = iter_all_layers if sublayers else iter_leaf_layers
    found = [(path, layer) for path, layer in walker(model) if matcher(layer)]
    if not found:
        raise ValueError(
            f"`{argname}` matches no layer of the model. Received: {argname}={_describe_targets(targets)}. "
            f"Patterns are full-match regexes on layer names; available layers: "
            f"{_available_names(model, sublayers=sublayers)}"
        )
    return found


def clone_graph(model, clone_layer=None, call_layer=None):
    """Rebuilds a functional model (nested functional models included) via `clone_model`.

    `clone_layer(layer) -> new layer` (default: from config); `call_layer(new, orig, *args,
    **kwargs)` calls it (default: `new(*args, **kwargs)`). Returns `(new_model, pairs)` with
    `pairs` a list of `(new_layer, original_layer)` for every cloned leaf layer.
    Weights are not copied (see `copy_weights`).
    """
    pairs = []
    new_to_orig = {}

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless keras.ops operation: reuse it
        new = clone_layer(layer) if clone_layer is not None else layer.__class__.from_config(layer.get_config())
        pairs.append((new, layer))
        new_to_orig[id(new)] = layer
        return new

    def call_function(layer, *args, **kwargs):
        orig = new_to_orig.get(id(layer))
        if call_layer is None or orig is None:
            return layer(*args, **kwargs)
        return call_layer(layer, orig, *args, **kwargs)

    source = _as_functional(model)
    # Keras's own graph re-execution (nested Functional models included, recursive=True);
    # nested Sequential models are cloned without call_function (Keras's rule).
    new_model = keras.models.clone_model(
        source, clone_function=clone_function, call_function=call_function, recursive=True
    )
    return new_model, pairs


def copy_weights(pairs):
    for new, orig in pairs:
        if orig.weights:
            new.set_weights(orig.get_weights())


def _head_layers(model, trainable_layers):
    """Layers to keep trainable as the task head."""
    if trainable_layers is None:
        return set()
    if trainable_layers != "auto":
        return {id(layer) for _, layer in find_layers(model, trainable_layers, "trainable_layers")}
    named = [layer for _, layer in iter_leaf_layers(model) if layer.name == "head"]
    if named:
        return {id(layer) for layer in named}
    heads = set()
    for output in model.outputs:
        op = output._keras_history.operation
        while op is not None and not isinstance(op, keras.Model):
            if getattr(op, "weights", None):
                heads.add(id(op))
                break
            inbound = op._inbound_nodes[0].input_tensors if op._inbound_nodes else []
            if len(inbound) != 1:
                break
            op = inbound[0]._keras_history.operation
    return heads


# --------------------------------------------------------------------------- insertion
def add_adapters(
    model,
    targets,
    kind="bottleneck",
    *,
    bottleneck_dim=16,
    activation="relu",
    use_layer_norm=False,
    per_channel=False,
    use_bias=False,
    rank=4,
    lora_alpha=None,
    train_normalization=True,
    train_batchnorm=False,
    trainable_layers="auto",
    suffix="adapter",
):
    """Returns a copy of `model` with adapters after the `targets` layers, originals frozen.

    Args:
        model: a built Functional (or Sequential) model: a keras.applications CNN, a
            classifier with a nested backbone, a transformer stack, your own model. It is
            not modified.
        targets: which layers get an adapter: a regex matched in full against layer names
            (nested models included, e.g. `"block_\\d+_project"`), a layer class (e.g.
            `keras.layers.Conv2D`, `keras.layers.MultiHeadAttention`), a predicate
            `fn(layer) -> bool`, or a list of these.
        kind: "bottleneck" (`BottleneckAdapter` after each target's output),
            "conv_series" (`ConvAdapter(mode="series")` after each target),
            "conv_parallel" (`ConvAdapter(mode="parallel")` beside each target conv,
            reading the conv's input), or "lora" (Keras's own `layer.enable_lora(rank)`
            on each target: Dense, EinsumDense, Embedding, Conv).
        bottleneck_dim, activation, use_layer_norm: `BottleneckAdapter` options.
        per_channel, use_bias: `ConvAdapter` options.
        rank, lora_alpha: LoRA options.
        train_normalization: keep LayerNorm / GroupNorm / RMSNorm parameters trainable
            (Houlsby et al. train the layer norms too).
        train_batchnorm: what BatchNorm layers do. `False` (default): frozen (inference
            mode, statistics of the pretraining, gamma/beta fixed). `"affine"`: every
            BatchNormalization is replaced by a `FrozenBatchNormalization` with the same
            weights: gamma/beta train, the statistics stay those of the pretraining (what
            "train the adapters, the normalisation parameters and the head" needs). `True`:
            full BatchNorm training: a trainable Keras 3 BatchNorm runs in training mode
            inside `fit` (batch statistics, moving averages updated, whatever
            `training=False` the graph recorded), which is noisy on few-shot data.
            `FrozenBatchNormalization` layers already in `model` keep frozen statistics
            (trainable affine with `True` or `"affine"`).
        trainable_layers: the head: "auto" (layers named "head", else the last layer
            with weights on each output path), None, or patterns / classes like `targets`.
        suffix: adapters are named `"<target name>_<suffix>"`.

    Returns:
        A new functional `keras.Model` (recompile it before `fit`).
    """
    _check_model(model)
    validation.check_one_of("kind", kind, ADAPTER_KINDS)
    train_batchnorm = _check_train_batchnorm(train_batchnorm)
    if kind == "bottleneck":
        validation.check_positive_int(
            "bottleneck_dim", bottleneck_dim, "Pass the adapter width M, e.g. bottleneck_dim=16."
        )
    if kind == "lora":
        validation.check_positive_int("rank", rank, "Pass the LoRA rank, e.g. rank=4.")
        if lora_alpha is not None:
            validation.check_positive_float("lora_alpha", lora_alpha)
    matched = find_layers(model, targets, sublayers=kind == "lora")
    _check_targets(matched, kind, bottleneck_dim, per_channel)

    target_ids = {id(layer) for _, layer in matched}
    head_ids = _head_layers(model, trainable_layers)
    used_names = {path.rsplit("/", 1)[-1] for path, _ in iter_leaf_layers(model)} | {
        sub.name for sub in _iter_models(model)
    }
    inserted = []

    def unique(name):
        candidate, index = name, 1
        while candidate in used_names:
            index += 1
            candidate = f"{name}_{index}"
        used_names.add(candidate)
        return candidate

    def call_layer(new, orig, *args, **kwargs):
        outputs = new(*args, **kwargs)
        if id(orig) not in target_ids or kind == "lora":
            return outputs
        if not isinstance(outputs, keras.KerasTensor):
            raise ValueError(
                f"An adapter can only follow a layer with a single output tensor. Received: layer "
                f"'{orig.name}' ({type(orig).__name__}) returns {type(outputs).__name__}. "
                "Target a layer with one output (e.g. MultiHeadAttention without "
                "return_attention_scores)."
            )
        name = unique(f"{orig.name}_{suffix}")
        if kind == "bottleneck":
            adapter = BottleneckAdapter(
                bottleneck_dim, activation=activation, use_layer_norm=use_layer_norm, name=name
            )
            result = adapter(outputs)
        elif kind == "conv_series":
            adapter = ConvAdapter("series", per_channel=per_channel, use_bias=use_bias, name=name)
            result = adapter(outputs)
        else:
            adapter = ConvAdapter(
                "parallel", per_channel=per_channel, use_bias=use_bias, name=name, **_host_geometry(orig)
            )
            host_input = args[0] if args else kwargs.get("inputs")
            result = adapter([host_input, outputs])
        inserted.append((orig, adapter))
        return result

    def clone_layer(layer):
        if train_batchnorm == "affine" and _is_plain_batchnorm(layer):
            return FrozenBatchNormalization.from_batch_normalization(layer)  # weights copied
        return layer.__class__.from_config(layer.get_config())

    new_model, pairs = clone_graph(model, clone_layer=clone_layer, call_layer=call_layer)
    copy_weights([(new, orig) for new, orig in pairs if type(new) is type(orig)])
    missing = [orig.name for orig in (layer for _, layer in matched)
               if id(orig) not in {id(o) for o, _ in inserted} and kind != "lora"]
    if missing:
        raise ValueError(
            f"Adapters could not be inserted after {missing}: they sit inside a nested Sequential "
            "model, whose layers Keras clones without calling them. Rebuild that part with the "
            "functional API."
        )

    for new, orig in pairs:
        if isinstance(orig, (BottleneckAdapter, ConvAdapter)):
            new.trainable = orig.trainable  # adapters from an earlier call keep training
            continue
        lora_layers = [sub for sub in [new] + [s for _, s in iter_sublayers(new, "")]
                       if getattr(sub, "lora_enabled", False)]
        if lora_layers and id(orig) not in target_ids:
            new.trainable = orig.trainable  # LoRA from an earlier call: only its factors train
            for sub in lora_layers:
                for variable in sub.trainable_weights:
                    if "lora" not in variable.name:
                        variable.trainable = False
            continue
        if id(orig) in head_ids:
            new.trainable = True
        elif isinstance(new, keras.layers.BatchNormalization):
            new.trainable = bool(train_batchnorm)
        elif train_normalization and isinstance(new, NORMALIZATION_LAYERS):
            new.trainable = True
        else:
            new.trainable = False
        if kind != "lora":
            continue
        # LoRA targets may be the layer itself or layers nested in it (attention projections).
        couples = [(new, orig)] + list(zip(
            [sub for _, sub in iter_sublayers(new, "")], [sub for _, sub in iter_sublayers(orig, "")]
        ))
        hits = [(n, o) for n, o in couples if id(o) in target_ids]
        if not hits:
            continue
        new.trainable = True
        for sub, _ in couples[1:]:
            sub.trainable = False
        for sub, sub_orig in hits:
            sub.trainable = True
            if not getattr(sub, "lora_enabled", False):
                sub.enable_lora(rank, lora_alpha=lora_alpha)
            for variable in sub.trainable_weights:
                if "lora" not in variable.name:
                    variable.trainable = False  # only the low-rank factors train
    return new_model


def _check_train_batchnorm(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "affine":
        return value
    raise ValueError(
        "`train_batchnorm` must be False (BatchNorm frozen), True (BatchNorm trained in training "
        "mode) or 'affine' (gamma/beta trained, statistics frozen). "
        f"Received: train_batchnorm={value!r}"
    )


def _is_plain_batchnorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization) and not isinstance(
        layer, FrozenBatchNormalization
    )


def _iter_models(model):
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_models(layer)


def _host_geometry(layer):
    """The `host_*` arguments of a parallel ConvAdapter beside `layer`."""
    if isinstance(layer, keras.layers.Dense):
        return {}
    return {
        "host_kernel_size": tuple(layer.kernel_size),
        "host_strides": tuple(layer.strides),
        "host_padding": layer.padding,
        "host_dilation_rate": tuple(layer.dilation_rate),
    }


def _check_targets(matched, kind, bottleneck_dim, per_channel):
    for path, layer in matched:
        if isinstance(layer, keras.Model):
            continue
        if kind == "lora":
            if not hasattr(layer, "enable_lora"):
                raise ValueError(
                    "`targets` must select layers that support LoRA (Dense, EinsumDense, Embedding, "
                    f"Conv) for kind='lora'. Received: layer '{path}' of type {type(layer).__name__}"
                )
            continue
        if not layer._inbound_nodes:
            raise ValueError(f"Layer '{path}' is not connected to the model graph.")
        outputs = layer._inbound_nodes[0].outputs
        if len(outputs) != 1:
            raise ValueError(
                f"An adapter can only follow a layer with a single output tensor. Received: layer "
                f"'{path}' ({type(layer).__name__}) has {len(outputs)} outputs."
            )
        shape = tuple(outputs[0].shape)
        if len(shape) < 2 or shape[-1] is None:
            raise ValueError(
                f"Adapters need a target output of rank >= 2 with a known last axis. Received: layer "
                f"'{path}' with output shape {shape}"
            )
        if kind == "bottleneck" and bottleneck_dim > shape[-1]:
            raise ValueError(
                f"`bottleneck_dim` must be at most the feature size of every target. Received: "
                f"bottleneck_dim={bottleneck_dim} for layer '{path}' with {shape[-1]} features. "
                "Lower bottleneck_dim or target wider layers."
            )
        if kind == "conv_parallel":
            inputs = layer._inbound_nodes[0].input_tensors
            if not isinstance(layer, _CONV_LIKE + (keras.layers.Dense,)) or len(inputs) != 1:
                raise ValueError(
                    "kind='conv_parallel' needs convolution (or Dense) targets with one input: the "
                    f"adapter reads the target's input. Received: layer '{path}' of type "
                    f"{type(layer).__name__}. Use kind='conv_series' after other layers."
                )
            if getattr(layer, "padding", "valid") not in ("valid", "same"):
                raise ValueError(
                    f"kind='conv_parallel' needs 'valid' or 'same' padding. Received: layer '{path}' "
                    f"with padding={layer.padding!r}"
                )
            if per_channel and inputs[0].shape[-1] != shape[-1]:
                raise ValueError(
                    "`per_channel=True` needs targets with as many input as output channels. "
                    f"Received: layer '{path}' maps {inputs[0].shape[-1]} to {shape[-1]} channels. "
                    "Use per_channel=False (a full C x D alpha) or other targets."
                )


# --------------------------------------------------------------------------- report
def _size(variable):
    return int(np.prod(variable.shape)) if len(variable.shape) else 1


def _role(layer):
    if isinstance(layer, (BottleneckAdapter, ConvAdapter)):
        return "adapter"
    if getattr(layer, "lora_enabled", False) or any(
        getattr(sub, "lora_enabled", False) for _, sub in iter_sublayers(layer, "")
    ):
        return "lora"
    if layer.trainable and layer.trainable_weights:
        if isinstance(layer, NORMALIZATION_LAYERS):
            return "normalization"
        return "head"
    return "frozen"


def adapter_parameter_report(model):
    """Counts what trains: totals, trainable share, and one row per adapter / LoRA layer.

    Returns a dict with `total_params`, `trainable_params`, `trainable_percent`,
    `added_params` (adapter + LoRA factors), `added_percent` (relative to the rest, the
    "extra parameters" of Houlsby et al.), `by_role` (trainable parameters of adapters,
    LoRA, normalisation, head) and `adapters` (`{"name", "class", "params", "trainable"}`).
    """
    _check_model(model)
    total = sum(_size(v) for v in {id(v): v for v in model.weights}.values())
    trainable = sum(_size(v) for v in {id(v): v for v in model.trainable_weights}.values())
    rows, added = [], 0
    by_role = {"adapter": 0, "lora": 0, "normalization": 0, "head": 0, "other": 0}
    lora_vars = set()
    for path, layer in iter_all_layers(model):
        if getattr(layer, "lora_enabled", False):
            variables = [v for v in layer.weights if "lora" in v.name]
            lora_vars.update(id(v) for v in variables)
            params = sum(_size(v) for v in variables)
            added += params
            by_role["lora"] += sum(_size(v) for v in variables if v.trainable)
            rows.append({"name": path, "class": type(layer).__name__, "role": "lora", "params": params,
                         "trainable": sum(_size(v) for v in variables if v.trainable)})
    for path, layer in iter_leaf_layers(model):
        role = _role(layer)
        trainable_here = sum(_size(v) for v in layer.trainable_weights if id(v) not in lora_vars)
        if role == "adapter":
            params = sum(_size(v) for v in layer.weights)
            added += params
            rows.append({"name": path, "class": type(layer).__name__, "role": role, "params": params,
                         "trainable": trainable_here})
        if role in ("adapter", "normalization", "head"):
            by_role[role] += trainable_here
        elif layer.trainable and trainable_here:
            by_role["other"] += trainable_here
    base = total - added
    return {
        "total_params": total,
        "trainable_params": trainable,
        "trainable_percent": 100.0 * trainable / max(total, 1),
        "added_params": added,
        "added_percent": 100.0 * added / max(base, 1),
        "by_role": by_role,
        "adapters": rows,
    }


def format_parameter_report(report, max_rows=20):
    """A markdown table of `adapter_parameter_report(model)`."""
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


# --------------------------------------------------------------------------- tasks
def _task_variables(model):
    """`{key: variable}`: every trainable layer's trainable weights, plus normalisation statistics."""
    out = {}
    for path, layer in iter_leaf_layers(model):
        if not layer.trainable:
            continue
        variables = list(layer.trainable_weights)
        if isinstance(layer, NORMALIZATION_LAYERS):
            known = {id(v) for v in variables}
            variables += [v for v in layer.non_trainable_weights if id(v) not in known]
        owner = {}
        for subpath, sub in reversed(iter_sublayers(layer, path)):
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

    Keys are `"<layer path>/<variable name>"` for the adapters, LoRA factors, trainable
    normalisation layers (with their moving statistics) and the head: everything that
    differs between two tasks sharing the frozen backbone.

    LoRA caveat: Keras writes a LoRA layer to `.keras` with the factors merged into the base
    kernel (and zero factors), so per-task LoRA weights belong in a model adapted from the
    original base (`add_adapters(base, ..., kind="lora")`), not in a reloaded `.keras` file
    of another task. Bottleneck / conv adapters have no such caveat.
    """
    _check_model(model)
    return {key: np.array(keras.ops.convert_to_numpy(v)) for key, v in _task_variables(model).items()}


def set_adapter_weights(model, weights):
    """Assigns task weights from `get_adapter_weights` (switches the active task in place).

    Only variables are assigned: compiled / traced functions keep working, nothing is
    rebuilt. Raises a ValueError naming missing, unexpected or mis-shaped entries.
    """
    _check_model(model)
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
    """Writes only the task weights (adapters, LoRA, norms, head) to an `.npz` file."""
    path = str(path)
    if not path.endswith(".npz"):
        raise ValueError(
            f"`path` must end with '.npz'. Received: path={path!r}"
        )
    weights = get_adapter_weights(model)
    np.savez(path, **weights)
    return path


def load_adapter_weights(model, path):
    """Loads a file written by `save_adapter_weights` into `model` (task switch)."""
    with np.load(str(path)) as data:
        weights = {key: data[key] for key in data.files}
    set_adapter_weights(model, weights)
    return model
