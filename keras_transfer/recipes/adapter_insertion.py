"""Insert adapters (bottleneck, Houlsby, 1x1 conv in series / parallel, Keras LoRA, DoRA) into a built model.

The pretrained model stays untouched: `add_adapters` rebuilds the functional graph with
`keras.models.clone_model(recursive=True, clone_function=..., call_function=...)` (Keras's
own graph re-execution, nested backbones included, see `model_graph.clone_graph`), copies
every original weight, freezes the original layers and leaves trainable only the
adapters, the normalisation parameters and the head.
"""

import keras
import numpy as np

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.recipes._dora_adapters import check_dora_targets
from keras_transfer.recipes._dora_adapters import dora_clone_function
from keras_transfer.recipes._dora_adapters import dora_layers
from keras_transfer.recipes._dora_adapters import enable_dora
from keras_transfer.recipes._dora_adapters import train_only_factors
from keras_transfer.recipes._houlsby_blocks import check_houlsby_targets
from keras_transfer.recipes._houlsby_blocks import copy_houlsby_weights
from keras_transfer.recipes._houlsby_blocks import houlsby_block
from keras_transfer.recipes._houlsby_blocks import keep_houlsby_training
from keras_transfer.recipes.freeze_batchnorm_statistics import clone_with_frozen_batchnorm
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation
from keras_transfer.utils.layer_names import LayerNames

ADAPTER_KINDS = ("bottleneck", "houlsby", "conv_series", "conv_parallel", "lora", "dora")

NORMALIZATION_LAYERS = model_graph.NORMALIZATION_LAYERS

_CONV_LIKE = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
)


def add_adapters(
    model,
    targets,
    kind="bottleneck",
    *,
    bottleneck_dim=16,
    activation="relu",
    use_layer_norm=False,
    init_scale=None,
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

    The pretrained model stays untouched: its functional graph is rebuilt (nested
    backbones included) with an adapter after (or beside) each target, every original
    weight is copied, the original layers are frozen and only the adapters, the
    normalisation parameters and the head stay trainable. Adapters start as the
    identity, so the copy's outputs equal the original's until it trains.

    Args:
        model: a built Functional (or Sequential) model: a keras.applications CNN, a
            classifier with a nested backbone, a transformer stack, your own model. It is
            not modified.
        targets: which layers get an adapter: a regex matched in full against layer names
            (nested models included, e.g. `"block_\\d+_project"`), a layer class (e.g.
            `keras.layers.Conv2D`, `keras.layers.MultiHeadAttention`), a predicate
            `fn(layer) -> bool`, or a list of these.
        kind: "bottleneck" (`BottleneckAdapter` after each target's output),
            "houlsby" (each target `keras_hub.layers.TransformerEncoder` block becomes a
            `HoulsbyTransformerEncoder` with the same weights: two adapters inside the
            block, after the attention and the feed-forward output projections, before
            each residual add and LayerNorm; only the adapters and, with
            `train_normalization`, the block's LayerNorms train in it),
            "conv_series" (`ConvAdapter(mode="series")` after each target),
            "conv_parallel" (`ConvAdapter(mode="parallel")` beside each target conv,
            reading the conv's input), "lora" (Keras's own `layer.enable_lora(rank)`
            on each target: Dense, EinsumDense, Embedding, Conv) or "dora" (each target
            Dense / EinsumDense / Conv2D becomes a `DoRADense` / `DoRAEinsumDense` /
            `DoRAConv2D`, attention projections included: magnitude + LoRA direction).
        bottleneck_dim: width of each `BottleneckAdapter`'s bottleneck (below the
            target's features).
        activation: the `BottleneckAdapter` non-linearity (kind "bottleneck" or
            "houlsby"; None makes Houlsby adapters linear, which `fold_adapters` folds).
        use_layer_norm: a LayerNorm at the `BottleneckAdapter`'s input.
        init_scale: kind "houlsby": None (the adapters' up-projections start at zero:
            the exact identity) or the standard deviation of Houlsby et al.'s
            near-identity truncated-normal initialisation (e.g. 1e-3).
        per_channel: `ConvAdapter` with one scale per channel instead of a full
            1x1 matrix.
        use_bias: `ConvAdapter` with a bias.
        rank: the LoRA / DoRA rank (`layer.enable_lora(rank)`), at most min(input size,
            output size) of every DoRA target's kernel.
        lora_alpha: the LoRA / DoRA scale numerator (default: `rank`).
        train_normalization: keep LayerNorm / GroupNorm / RMSNorm parameters trainable
            (Houlsby et al. train the layer norms too). Norms inside a frozen composite
            layer (a keras-hub `TransformerEncoder` block) stay frozen with it: a reloaded
            `.keras` file restores the block's flag, not its sublayers'; kind "houlsby"
            stores the choice in the block and trains them.
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

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model, `kind`,
            `bottleneck_dim`, `rank`, `lora_alpha` or `train_batchnorm` is invalid,
            `targets` matches no layer, or a matched layer cannot take that kind of
            adapter (the message names it).

    Reference:
        Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019;
        Rebuffi et al., "Learning multiple visual domains with residual adapters",
        NeurIPS 2017, and "Efficient parametrization of multi-domain deep neural
        networks", CVPR 2018 (series / parallel adapters); Hu et al., "LoRA: Low-Rank
        Adaptation of Large Language Models", ICLR 2022 (arXiv 2021); Liu et al., "DoRA:
        Weight-Decomposed Low-Rank Adaptation", ICML 2024.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> adapted = keras_transfer.recipes.add_adapters(model, "body", bottleneck_dim=2)
    >>> [layer.name for layer in adapted.layers[1:]]
    ['body', 'body_adapter', 'head']
    >>> [w.path for w in adapted.trainable_weights][-2:]
    ['head/kernel', 'head/bias']
    >>> lora = keras_transfer.recipes.add_adapters(model, "body", kind="lora", rank=2)
    >>> [w.path for w in lora.trainable_weights]
    ['body/lora_kernel_a', 'body/lora_kernel_b', 'head/kernel', 'head/bias']
    >>> dora = keras_transfer.recipes.add_adapters(model, "body", kind="dora", rank=2)
    >>> [w.path for w in dora.trainable_weights][:3]
    ['body/dora_kernel_a', 'body/dora_kernel_b', 'body/dora_magnitude']
    """
    train_batchnorm = _check_arguments(model, kind, bottleneck_dim, rank, lora_alpha, train_batchnorm)
    matched = model_graph.find_layers(model, targets, sublayers=kind in ("lora", "dora"))
    _check_targets(matched, kind, bottleneck_dim, per_channel, rank)
    target_ids = {id(layer) for _, layer in matched}
    head_ids = head_layer_ids(model, trainable_layers)
    options = dict(
        bottleneck_dim=bottleneck_dim,
        activation=activation,
        use_layer_norm=use_layer_norm,
        init_scale=init_scale,
        per_channel=per_channel,
        use_bias=use_bias,
    )
    inserter = _AdapterInserter(model, kind, target_ids, suffix, options)
    clone_layer = _clone_function(kind, target_ids, options, train_normalization, train_batchnorm)
    if kind == "dora":
        clone_layer = dora_clone_function(target_ids, clone_layer)
    new_model, pairs = model_graph.clone_graph(model, clone_layer=clone_layer, call_layer=inserter.call_layer)
    model_graph.copy_weights([(new, orig) for new, orig in pairs if type(new) is type(orig)])
    replaced = copy_houlsby_weights(pairs, target_ids) if kind == "houlsby" else set()
    inserter.check_all_inserted(matched)
    for new, orig in pairs:
        if id(new) in replaced or _keeps_earlier_training(new, orig, target_ids):
            continue
        new.trainable = _trains(new, orig, head_ids, train_normalization, train_batchnorm)
        if kind == "lora":
            _enable_lora(new, orig, target_ids, rank, lora_alpha)
        if kind == "dora":
            enable_dora(new, orig, dict.fromkeys(target_ids, (rank, lora_alpha, False)))
    return new_model


# --------------------------------------------------------------------------- arguments
def _check_arguments(model, kind, bottleneck_dim, rank, lora_alpha, train_batchnorm):
    """Validates `add_adapters`' arguments; returns `train_batchnorm` normalised."""
    model_graph.check_graph_model(model)
    validation.check_one_of("kind", kind, ADAPTER_KINDS)
    train_batchnorm = _check_train_batchnorm(train_batchnorm)
    if kind in ("bottleneck", "houlsby"):
        validation.check_positive_int(
            "bottleneck_dim", bottleneck_dim, "Pass the adapter width M, e.g. bottleneck_dim=16."
        )
    if kind in ("lora", "dora"):
        validation.check_positive_int("rank", rank, "Pass the LoRA / DoRA rank, e.g. rank=4.")
        if lora_alpha is not None:
            validation.check_positive_float("lora_alpha", lora_alpha)
    return train_batchnorm


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


def _check_targets(matched, kind, bottleneck_dim, per_channel, rank):
    if kind == "houlsby":
        check_houlsby_targets(matched, bottleneck_dim)
        return
    if kind == "dora":
        check_dora_targets(matched, rank)
        return
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
        shape = _check_target_output(path, layer)
        if kind == "bottleneck" and bottleneck_dim > shape[-1]:
            raise ValueError(
                f"`bottleneck_dim` must be at most the feature size of every target. Received: "
                f"bottleneck_dim={bottleneck_dim} for layer '{path}' with {shape[-1]} features. "
                "Lower bottleneck_dim or target wider layers."
            )
        if kind == "conv_parallel":
            _check_parallel_target(path, layer, shape, per_channel)


def _check_target_output(path, layer):
    """The shape of a target's single output; a ValueError when an adapter cannot follow it."""
    nodes = model_graph.inbound_nodes(layer)
    if not nodes:
        raise ValueError(f"Layer '{path}' is not connected to the model graph.")
    outputs = nodes[0].outputs
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
    return shape


def _check_parallel_target(path, layer, shape, per_channel):
    inputs = model_graph.inbound_nodes(layer)[0].input_tensors
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


def head_layer_ids(model, trainable_layers, stop_ids=()):
    """`id`s of the layers that train as the task head (`add_adapters`, `add_visual_prompts`).

    None: no layer; a selector: the matching layers; "auto": the leaf layers named "head", else
    the first layer with weights on each output's path back (not past a nested model or a layer
    whose `id` is in `stop_ids`).
    """
    if trainable_layers is None:
        return set()
    if not (isinstance(trainable_layers, str) and trainable_layers == "auto"):
        return {id(layer) for _, layer in model_graph.find_layers(model, trainable_layers, "trainable_layers")}
    named = [layer for _, layer in model_graph.iter_leaf_layers(model) if layer.name == "head"]
    if named:
        return {id(layer) for layer in named}
    heads = set()
    for output in model.outputs:
        op = model_graph.tensor_producer(output)
        while op is not None and not isinstance(op, keras.Model) and id(op) not in stop_ids:
            if getattr(op, "weights", None):
                heads.add(id(op))
                break
            nodes = model_graph.inbound_nodes(op)
            inbound = nodes[0].input_tensors if nodes else []
            if len(inbound) != 1:
                break
            op = model_graph.tensor_producer(inbound[0])
    return heads


# --------------------------------------------------------------------------- insertion
def _clone_function(kind, target_ids, options, train_normalization, train_batchnorm):
    """The `clone_layer` of `clone_graph`: Houlsby blocks for the targets, frozen-statistics BatchNorm."""
    fallback = clone_with_frozen_batchnorm if train_batchnorm == "affine" else model_graph.clone_layer_from_config

    def clone_layer(layer):
        if kind == "houlsby" and id(layer) in target_ids:
            return houlsby_block(layer, options, train_normalization)
        return fallback(layer)

    return clone_layer


class _AdapterInserter:
    """The `call_layer` of `clone_graph` for `add_adapters`: calls each clone, then its adapter."""

    def __init__(self, model, kind, target_ids, suffix, options):
        self.kind = kind
        self.target_ids = target_ids
        self.suffix = suffix
        self.options = options
        self.names = LayerNames(model)
        self.inserted = []  # (original target, adapter)

    def call_layer(self, new, orig, *args, **kwargs):
        outputs = new(*args, **kwargs)
        if id(orig) not in self.target_ids or self.kind in ("lora", "dora", "houlsby"):
            return outputs
        if not isinstance(outputs, keras.KerasTensor):
            raise ValueError(
                f"An adapter can only follow a layer with a single output tensor. Received: layer "
                f"'{orig.name}' ({type(orig).__name__}) returns {type(outputs).__name__}. "
                "Target a layer with one output (e.g. MultiHeadAttention without "
                "return_attention_scores)."
            )
        adapter = self.make_adapter(orig)
        if self.kind == "conv_parallel":
            host_input = args[0] if args else kwargs.get("inputs")
            result = adapter([host_input, outputs])
        else:
            result = adapter(outputs)
        self.inserted.append((orig, adapter))
        return result

    def make_adapter(self, orig):
        name = self.names.unique(f"{orig.name}_{self.suffix}")
        options = self.options
        if self.kind == "bottleneck":
            return BottleneckAdapter(
                options["bottleneck_dim"],
                activation=options["activation"],
                use_layer_norm=options["use_layer_norm"],
                name=name,
            )
        mode = "series" if self.kind == "conv_series" else "parallel"
        geometry = _host_geometry(orig) if mode == "parallel" else {}
        return ConvAdapter(
            mode, per_channel=options["per_channel"], use_bias=options["use_bias"], name=name, **geometry
        )

    def check_all_inserted(self, matched):
        if self.kind in ("lora", "dora", "houlsby"):
            return
        done = {id(orig) for orig, _ in self.inserted}
        missing = [layer.name for _, layer in matched if id(layer) not in done]
        if missing:
            raise ValueError(
                f"Adapters could not be inserted after {missing}: they sit inside a nested Sequential "
                "model, whose layers Keras clones without calling them. Rebuild that part with the "
                "functional API."
            )


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


# --------------------------------------------------------------------------- trainable set
def _keeps_earlier_training(new, orig, target_ids):
    """Adapters and LoRA factors from an earlier call keep training; True when `new` is one."""
    if isinstance(orig, (BottleneckAdapter, ConvAdapter)):
        new.trainable = orig.trainable
        return True
    if keep_houlsby_training(new, orig, target_ids):
        return True
    earlier_lora = model_graph.lora_layers(new) + dora_layers(new)
    if not earlier_lora or id(orig) in target_ids:
        return False
    new.trainable = orig.trainable  # only the LoRA / DoRA factors train
    for sub in earlier_lora:
        train_only_factors(sub)
    return True


def _trains(new, orig, head_ids, train_normalization, train_batchnorm):
    """Whether the clone `new` of an original layer trains: the head and normalisation layers."""
    if id(orig) in head_ids:
        return True
    if isinstance(new, keras.layers.BatchNormalization):
        return bool(train_batchnorm)
    return bool(train_normalization and isinstance(new, NORMALIZATION_LAYERS))


def _enable_lora(new, orig, target_ids, rank, lora_alpha):
    """LoRA on the clone of a target, or on the clones of its targeted sublayers (attention projections)."""
    couples = model_graph.paired_sublayers(new, orig)
    hits = [(n, o) for n, o in couples if id(o) in target_ids]
    if not hits:
        return
    new.trainable = True
    model_graph.train_only_lora_factors(new)  # also the variables `new` holds itself (position embeddings)
    for sub, _ in couples[1:]:
        sub.trainable = False
    for sub, _ in hits:
        sub.trainable = True
        if not getattr(sub, "lora_enabled", False):
            sub.enable_lora(rank, lora_alpha=lora_alpha)
        model_graph.train_only_lora_factors(sub)  # only the low-rank factors train
