"""Fold conv adapters, linear Houlsby adapters and LoRA back into the weights: a plain model.

`fold_adapters` lists the placements that fold exactly; LoRA layers merge through Keras's
merged-kernel saving path (`save_own_variables`); `lora_factors.unmerge_lora` goes back to base + factors.
"""

import keras
import numpy as np

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.layers.frozen_batch_normalization import FrozenBatchNormalization
from keras_transfer.recipes._dora_adapters import dora_layers
from keras_transfer.recipes._houlsby_blocks import fold_houlsby_weights
from keras_transfer.recipes._houlsby_blocks import is_houlsby_block
from keras_transfer.recipes._houlsby_blocks import keep_houlsby_training
from keras_transfer.recipes._houlsby_blocks import plain_encoder
from keras_transfer.recipes.dora_merging import copy_merged_weights
from keras_transfer.recipes.dora_merging import plain_clone
from keras_transfer.recipes.lora_factors import lora_attrs
from keras_transfer.utils import model_graph

_FOLDABLE_HOSTS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


def _refuse(adapter, reason):
    raise ValueError(
        f"ConvAdapter '{adapter.name}' cannot be folded exactly: {reason}. Folding needs the adapter "
        "right after a linear convolution (or convolution -> BatchNormalization for mode='series'); "
        "insert it there (add_adapters(kind='conv_series', targets=<conv layers>)) or serve the "
        "unfolded model."
    )


def _is_linear(layer):
    activation = getattr(layer, "activation", None)
    return (
        activation is None or activation is keras.activations.linear or getattr(activation, "__name__", "") == "linear"
    )


def _check_host(adapter, host, bn=None):
    if not isinstance(host, _FOLDABLE_HOSTS) or isinstance(host, keras.layers.SeparableConv2D):
        _refuse(adapter, f"it follows layer '{host.name}' ({type(host).__name__}), which is not a convolution")
    if not _is_linear(host):
        _refuse(
            adapter,
            f"its convolution '{host.name}' applies the non-linear activation "
            f"'{keras.activations.serialize(host.activation)}' before the adapter",
        )
    if getattr(host, "data_format", "channels_last") != "channels_last":
        _refuse(adapter, f"convolution '{host.name}' is channels_first")
    if getattr(host, "groups", 1) != 1:
        _refuse(adapter, f"convolution '{host.name}' is grouped (groups={host.groups})")
    if isinstance(host, keras.layers.DepthwiseConv2D):
        if not adapter.per_channel:
            _refuse(
                adapter,
                f"depthwise convolution '{host.name}' cannot absorb a full C x D alpha "
                "(it would mix channels); use per_channel=True",
            )
        if host.depth_multiplier != 1:
            _refuse(adapter, f"depthwise convolution '{host.name}' has depth_multiplier={host.depth_multiplier}")
    calls = len(model_graph.inbound_nodes(host))
    if calls != 1:
        _refuse(adapter, f"convolution '{host.name}' is shared (called {calls} times)")
    if adapter.use_bias and not getattr(host, "use_bias", False) and not bn:
        _refuse(
            adapter,
            f"its bias needs a bias in convolution '{host.name}', which was built with "
            "use_bias=False (use ConvAdapter(use_bias=False) there)",
        )


def _plan_folds(model):
    """`{id(adapter): plan}` for every ConvAdapter; raises for non-foldable placements."""
    plans = {}
    for fmodel in model_graph.iter_functional_models(model):
        nodes = model_graph.graph_nodes(fmodel)
        consumers = {}
        for node in nodes:
            for tensor in node.input_tensors:
                consumers.setdefault(id(tensor), []).append(node)
        outputs = {id(t) for t in fmodel.outputs}

        def only_feeds(tensor, node):
            return consumers.get(id(tensor), []) == [node] and id(tensor) not in outputs

        for node in nodes:
            layer = node.operation
            if isinstance(layer, BottleneckAdapter):
                raise ValueError(
                    f"BottleneckAdapter '{layer.name}' cannot be folded: its non-linearity "
                    f"('{keras.activations.serialize(layer.activation)}') between the two projections "
                    "makes it more than a weight perturbation. Serve the adapted model, or use "
                    "ConvAdapter / LoRA where zero inference overhead matters."
                )
            if is_houlsby_block(layer):
                layer.merged_encoder_weights()  # raises unless both adapters are linear
                continue
            if not isinstance(layer, ConvAdapter):
                continue
            calls = len(model_graph.inbound_nodes(layer))
            if calls != 1:
                _refuse(layer, f"it is shared (called {calls} times)")
            plan = _plan_series if layer.mode == "series" else _plan_parallel
            plans[id(layer)] = plan(layer, node, only_feeds)
    return plans


def _plan_series(layer, node, only_feeds):
    """The fold plan of a series adapter after a conv, or after conv -> BatchNormalization."""
    tensor = node.input_tensors[0]
    producer = model_graph.tensor_producer(tensor)
    if not only_feeds(tensor, node):
        _refuse(layer, f"the output of '{producer.name}' also feeds other layers or the model output")
    bn = None
    if isinstance(producer, keras.layers.BatchNormalization):
        bn = producer
        if len(model_graph.inbound_nodes(bn)) != 1:
            _refuse(layer, f"BatchNormalization '{bn.name}' is shared")
        if bn.axis not in (-1, len(tensor.shape) - 1):
            _refuse(layer, f"BatchNormalization '{bn.name}' normalises axis {bn.axis}, not channels")
        bn_node = model_graph.inbound_nodes(bn)[0]
        tensor = bn_node.input_tensors[0]
        producer = model_graph.tensor_producer(tensor)
        if not only_feeds(tensor, bn_node):
            _refuse(layer, f"the output of '{producer.name}' also feeds other layers")
    if not isinstance(producer, _FOLDABLE_HOSTS):
        between = f" through '{bn.name}'" if bn is not None else ""
        _refuse(
            layer,
            f"it follows layer '{producer.name}' ({type(producer).__name__}){between}, not a "
            "convolution (a non-linearity or other layer sits between the convolution and "
            "the adapter)",
        )
    _check_host(layer, producer, bn)
    return {"adapter": layer, "host": producer, "bn": bn}


def _plan_parallel(layer, node, only_feeds):
    """The fold plan of a parallel adapter beside a conv, reading the conv's own input."""
    x, fx = node.input_tensors[:2]
    producer = model_graph.tensor_producer(fx)
    if not isinstance(producer, _FOLDABLE_HOSTS):
        _refuse(
            layer,
            f"its second input comes from '{producer.name}' ({type(producer).__name__}), not from a convolution",
        )
    _check_host(layer, producer)
    if not only_feeds(fx, node):
        _refuse(layer, f"the output of '{producer.name}' also feeds other layers or the model output")
    host_inputs = model_graph.inbound_nodes(producer)[0].input_tensors
    if len(host_inputs) != 1 or host_inputs[0] is not x:
        _refuse(layer, f"its first input is not the input of convolution '{producer.name}'")
    if not isinstance(producer, keras.layers.Dense):
        geometry = {
            "kernel_size": tuple(producer.kernel_size),
            "strides": tuple(producer.strides),
            "padding": producer.padding,
            "dilation_rate": tuple(producer.dilation_rate),
        }
        expected = {
            "kernel_size": tuple(layer._kernel_size),
            "strides": tuple(layer._strides),
            "padding": layer.host_padding,
            "dilation_rate": tuple(layer._dilation),
        }
        if geometry != expected:
            _refuse(
                layer,
                f"its host geometry {expected} differs from convolution '{producer.name}' "
                f"{geometry}, so the 1x1 branch does not read the filter's centre tap",
            )
    return {"adapter": layer, "host": producer, "bn": None}


def _folded_values(plan):
    """New (kernel, bias, moving_mean) for the host conv (and its BatchNorm)."""
    adapter, host, bn = plan["adapter"], plan["host"], plan["bn"]
    kernel = _np(host.kernel)
    depthwise = isinstance(host, keras.layers.DepthwiseConv2D)
    out_channels = kernel.shape[-2] if depthwise else kernel.shape[-1]
    bias = _np(host.bias) if getattr(host, "use_bias", False) else np.zeros(out_channels)
    alpha = _np(adapter.alpha)
    shift = _np(adapter.bias) if adapter.use_bias else np.zeros(out_channels)
    full = np.diag(alpha) if adapter.per_channel else alpha
    new_mean = None

    if adapter.mode == "parallel":
        centre = tuple((k - 1) // 2 for k in kernel.shape[:-2])
        kernel = kernel.copy()
        if depthwise:
            kernel[centre + (slice(None), 0)] += alpha
        else:
            kernel[centre] += full
        bias = bias + shift
    else:
        m = np.eye(out_channels) + full
        if bn is None:
            scale_in = np.ones(out_channels)
            scale_out = np.ones(out_channels)
        else:
            gamma = _np(bn.gamma) if bn.scale else np.ones(out_channels)
            beta = _np(bn.beta) if bn.center else np.zeros(out_channels)
            mean, var = _np(bn.moving_mean), _np(bn.moving_variance)
            s = gamma / np.sqrt(var + bn.epsilon)
            if np.any(np.abs(s) < 1e-12):
                raise ValueError(
                    f"ConvAdapter '{adapter.name}' cannot be folded through BatchNormalization "
                    f"'{bn.name}': some channels have gamma = 0, so the adapter's mixing cannot be "
                    "moved before the normalisation. Serve the unfolded model."
                )
            scale_in, scale_out = s, 1.0 / s
        # conv' = W diag(s) M diag(1/s) (diag = ones without BN).
        mix = (scale_in[:, None] * m) * scale_out[None, :]
        if depthwise:
            kernel = kernel * np.diag(mix)[:, None]
        else:
            kernel = np.einsum("...cd,de->...ce", kernel, mix)
        if bn is None:
            bias = bias @ m + shift
        else:
            # Keep the conv bias; move the constant into the moving mean:
            # b - mean' = [(s (b - mean) + beta) M + c - beta] / s.
            target = ((s * (bias - mean) + beta) @ m + shift - beta) / s
            new_mean = bias - target
    return kernel, bias, new_mean


def _strip_lora(layer):
    config = layer.get_config()
    if getattr(layer, "lora_enabled", False) or config.get("lora_rank"):
        config.pop("lora_rank", None)
        config.pop("lora_alpha", None)
    return layer.__class__.from_config(config)


def _merged_weights(orig, new):
    """Copies `orig`'s weights into `new`, merging LoRA factors of `orig` or of its sublayers.

    A LoRA layer's merged kernel is its own `kernel` property (`W + (alpha / r) A B`, as Keras
    computes it in the forward pass and when saving); the factors are dropped.
    """
    lora_layers = model_graph.lora_layers(orig)
    if not lora_layers:
        model_graph.copy_weights([(new, orig)])
        return
    merged, factors = {}, set()
    for sub in lora_layers:
        merged_name, names = lora_attrs(sub)
        merged[id(model_graph.base_weight(sub))] = keras.ops.convert_to_numpy(getattr(sub, merged_name))
        factors.update(id(getattr(sub, name)) for name in names)
    values = [
        merged[id(v)] if id(v) in merged else keras.ops.convert_to_numpy(v)
        for v in orig.weights
        if id(v) not in factors
    ]
    new.set_weights(values)


def _rebuild(model, fold_conv, merge_lora):
    plans = _plan_folds(model) if fold_conv else {}

    def clone_layer(layer):
        if fold_conv and isinstance(layer, FrozenBatchNormalization):
            # At inference a FrozenBatchNormalization is a BatchNormalization with the same
            # weights (same config, same variables in the same order).
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        if fold_conv and is_houlsby_block(layer):
            return plain_encoder(layer)
        if fold_conv and dora_layers(layer):
            return plain_clone(layer)
        return _strip_lora(layer) if merge_lora else model_graph.clone_layer_from_config(layer)

    def call_layer(new, orig, *args, **kwargs):
        if fold_conv and isinstance(orig, ConvAdapter):
            return args[0] if orig.mode == "series" else args[0][1]
        return new(*args, **kwargs)

    new_model, pairs = model_graph.clone_graph(model, clone_layer=clone_layer, call_layer=call_layer)
    by_orig = {id(orig): new for new, orig in pairs}
    for new, orig in pairs:
        if fold_conv and isinstance(orig, ConvAdapter):
            continue
        if fold_conv and is_houlsby_block(orig):
            fold_houlsby_weights(new, orig)
            continue
        if fold_conv and dora_layers(orig):
            copy_merged_weights(orig, new)
        elif merge_lora:
            _merged_weights(orig, new)
        else:
            model_graph.copy_weights([(new, orig)])
        new.trainable = orig.trainable
        keep_houlsby_training(new, orig)  # the block's frozen sublayers stay frozen
        if fold_conv and isinstance(orig, FrozenBatchNormalization):
            new.trainable = False  # inference mode in fit too, as the frozen-statistics layer ran
    for plan in plans.values():
        kernel, bias, new_mean = _folded_values(plan)
        host = by_orig[id(plan["host"])]
        kernel_var = model_graph.base_weight(host)
        kernel_var.assign(kernel.astype(kernel_var.dtype))
        if getattr(host, "use_bias", False):
            host.bias.assign(bias.astype(host.bias.dtype))
        elif plan["bn"] is None and np.any(bias != 0):
            raise ValueError(
                f"ConvAdapter '{plan['adapter'].name}' cannot be folded exactly: its bias (or the "
                f"parallel branch's shift) needs a bias in convolution '{plan['host'].name}', which was "
                "built with use_bias=False. Use ConvAdapter(use_bias=False) there."
            )
        if new_mean is not None:
            bn = by_orig[id(plan["bn"])]
            bn.moving_mean.assign(new_mean.astype(bn.moving_mean.dtype))
    return new_model


def fold_adapters(model):
    """Folds every ConvAdapter into its convolution and merges every LoRA and DoRA layer.

    A series 1x1 adapter after a conv `f` is `diag_1(alpha + I) * f`, a parallel one
    `f + diag_1(alpha)` at the filter's centre tap: both are exact in the weights. What folds:
    conv -> series adapter (`W' = W (I + alpha)`, `b' = b (I + alpha) + c`); conv ->
    BatchNormalization (`s * z + t` at inference) -> series adapter
    (`W' = W diag(s) (I + alpha) diag(1/s)`, the constant moved into the moving mean, every
    `s != 0`); conv -> parallel adapter on the conv's own input (`W'[centre] += alpha`,
    `b' = b + c`); depthwise convs with per-channel adapters; `HoulsbyTransformerEncoder`
    blocks whose two adapters are linear (`activation=None`, no layer norm: `x M + c`), which
    become plain `keras_hub.layers.TransformerEncoder` blocks with the attention output and
    feed-forward output projections `W M`, `b M + c`. A bottleneck adapter with a
    non-linearity (the default) is more than a weight perturbation and does not fold. DoRA layers
    become plain `Dense` / `EinsumDense` / `Conv2D` layers with the merged kernel (as
    `merge_dora`). The result has the adapted architecture's layers, names and weight shapes
    and no keras_transfer layer
    (`FrozenBatchNormalization` becomes a frozen `BatchNormalization`); its outputs equal the
    adapted model's at inference. The input model is not modified.

    Args:
        model: a built Functional or Sequential model, typically from `add_adapters`.

    Returns:
        A new plain `keras.Model`.

    Raises:
        ValueError: naming the adapter when its placement cannot fold exactly (an activation,
            a layer in between, a conv output feeding other layers, a BottleneckAdapter, a
            Houlsby block with non-linear adapters).

    Reference:
        Rebuffi et al., "Efficient parametrization of multi-domain deep neural networks",
        CVPR 2018; Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021.

    Example:
    >>> base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")])
    >>> adapted = keras_transfer.recipes.add_adapters(base, "conv", kind="conv_series")
    >>> [type(layer).__name__ for layer in keras_transfer.recipes.fold_adapters(adapted).layers]
    ['InputLayer', 'Conv2D']
    """
    model_graph.check_graph_model(model)
    return _rebuild(model, fold_conv=True, merge_lora=True)


def merge_lora(model):
    """A copy of `model` with every LoRA layer merged (`W + (alpha / r) A B`), LoRA disabled.

    Args:
        model: a built Functional or Sequential model with LoRA layers; other layers (bottleneck /
            conv adapters included) are copied unchanged.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: if `model` is not a built graph model or has no LoRA-enabled layer.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body")])
    >>> lora = keras_transfer.recipes.add_adapters(model, "body", kind="lora", rank=2)
    >>> keras_transfer.recipes.merge_lora(lora).get_layer("body").lora_enabled
    False
    """
    model_graph.check_graph_model(model)
    if not any(getattr(layer, "lora_enabled", False) for _, layer in model_graph.iter_all_layers(model)):
        raise ValueError(
            "`model` must have LoRA-enabled layers to merge. Received: a model without any "
            "(use add_adapters(model, targets, kind='lora') first)."
        )
    return _rebuild(model, fold_conv=False, merge_lora=True)
