"""A keras-hub `TransformerEncoder` with two Houlsby adapters inside the block.

keras-hub is optional: without it the module still imports and the class raises
an ImportError when it is instantiated.
"""

import keras
import numpy as np

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation

try:
    import keras_hub

    _BASE = keras_hub.layers.TransformerEncoder
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None
    _BASE = keras.layers.Layer

# keras-hub's sublayer names (they are also its checkpoint layout).
_PARTS = (
    "self_attention_layer",
    "self_attention_layer_norm",
    "self_attention_dropout",
    "feedforward_layer_norm",
    "feedforward_intermediate_dense",
    "feedforward_output_dense",
    "feedforward_dropout",
)
_ADAPTER_KEYS = (
    "bottleneck_dim",
    "adapter_activation",
    "adapter_use_layer_norm",
    "adapter_init_scale",
    "base_trainable",
)
BASE_TRAINABLE = ("all", "layer_norms", "none")


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


@keras.saving.register_keras_serializable(package="keras_transfer")
class HoulsbyTransformerEncoder(_BASE):
    """A keras-hub `TransformerEncoder` with two bottleneck adapters inside (Houlsby placement).

    The adapters sit where Houlsby et al. (Fig. 2) put them: one after the attention
    output projection (and its dropout), one after the feed-forward output projection,
    each before the residual add and, for `normalize_first=False` (BERT), before the
    LayerNorm. With `normalize_first=True` (pre-LN) they sit at the same points, before
    each residual add. Everything else is keras-hub's block, with its sublayer names, so
    `load_encoder_weights` copies a pretrained block in and
    `keras_transfer.recipes.add_adapters(model, keras_hub.layers.TransformerEncoder,
    "houlsby")` does it for every block of a model.

    Merging: a bottleneck adapter with a non-linearity cannot be folded into the block's
    weights. A linear one (`adapter_activation=None`, no layer norm) is
    `x (I + W_down W_up) + b_down W_up + b_up`, which `merged_encoder_weights` folds
    exactly into the attention output and feed-forward output projections; unmerging is
    not possible from the folded weights (keep the adapter weights to go back).

    Args:
        intermediate_dim: hidden size of the feed-forward network.
        num_heads: attention heads.
        bottleneck_dim: positive int `M`, the width of both adapters (at most the hidden
            size).
        adapter_activation: the adapters' non-linearity (None: linear, foldable).
        adapter_use_layer_norm: a LayerNorm at each adapter's input.
        adapter_init_scale: None (default): each adapter's up-projection starts at zero, so
            the block is exactly the keras-hub block at insertion. A positive float: both
            projections start from a truncated normal with that standard deviation (the
            near-identity initialisation of Houlsby et al., e.g. 1e-3).
        base_trainable: what trains besides the adapters once built: "all" (the whole
            block), "layer_norms" (the two LayerNorms, as Houlsby et al.) or "none".
        **kwargs: the other `keras_hub.layers.TransformerEncoder` arguments (`dropout`,
            `activation`, `layer_norm_epsilon`, `normalize_first`, ...) and `Layer`
            arguments.

    Call arguments:
        inputs: float tensor `(batch, sequence_length, hidden_dim)`.
        padding_mask: optional bool tensor `(batch, sequence_length)`.
        attention_mask: optional bool tensor `(batch, sequence_length, sequence_length)`.
        training: whether dropout is applied.
        return_attention_scores: also return the attention scores.

    Raises:
        ImportError: if keras-hub is not installed.
        ValueError: if `bottleneck_dim`, `adapter_init_scale` or `base_trainable` is
            invalid; when built, if `bottleneck_dim` exceeds the hidden size.

    Reference:
        Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019.

    Example:

    >>> block = keras_transfer.layers.HoulsbyTransformerEncoder(
    ...     intermediate_dim=16, num_heads=2, bottleneck_dim=4)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    >>> tuple(block(x).shape)
    (2, 5, 8)
    >>> [layer.name for layer in (block.attention_adapter, block.feedforward_adapter)]
    ['attention_adapter', 'feedforward_adapter']
    >>> block.attention_adapter.count_params()  # 2 * 8 * 4 + 8 + 4
    76
    """

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        bottleneck_dim=64,
        adapter_activation="relu",
        adapter_use_layer_norm=False,
        adapter_init_scale=None,
        base_trainable="all",
        **kwargs,
    ):
        if keras_hub is None:
            raise ImportError(
                "`HoulsbyTransformerEncoder` needs keras-hub. Received: keras-hub is not installed. "
                "Run `pip install keras-hub`."
            )
        super().__init__(intermediate_dim, num_heads, **kwargs)
        self.bottleneck_dim = validation.check_positive_int(
            "bottleneck_dim", bottleneck_dim, "Pass the adapter width M, e.g. bottleneck_dim=16."
        )
        self.adapter_activation = keras.activations.get(adapter_activation)
        self.adapter_use_layer_norm = bool(adapter_use_layer_norm)
        if adapter_init_scale is not None:
            adapter_init_scale = validation.check_positive_float("adapter_init_scale", adapter_init_scale)
        self.adapter_init_scale = adapter_init_scale
        self.base_trainable = validation.check_one_of("base_trainable", base_trainable, BASE_TRAINABLE)

    def build(self, inputs_shape):
        super().build(inputs_shape)
        missing = [name for name in _PARTS if name not in self._parts()]
        if missing:
            raise ValueError(
                f"`HoulsbyTransformerEncoder` needs keras-hub's TransformerEncoder sublayers {missing}. "
                f"Received: keras-hub {keras_hub.__version__}. Install keras-hub >= 0.17."
            )
        if self.adapter_init_scale is None:
            initializers = {}
        else:
            initializers = {
                "down_initializer": keras.initializers.TruncatedNormal(stddev=self.adapter_init_scale),
                "up_initializer": keras.initializers.TruncatedNormal(stddev=self.adapter_init_scale),
            }
        self.attention_adapter, self.feedforward_adapter = [
            BottleneckAdapter(
                self.bottleneck_dim,
                activation=self.adapter_activation,
                use_layer_norm=self.adapter_use_layer_norm,
                epsilon=self.layer_norm_epsilon,
                dtype=self.dtype_policy,
                name=name,
                **initializers,
            )
            for name in ("attention_adapter", "feedforward_adapter")
        ]
        self.attention_adapter.build(inputs_shape)
        self.feedforward_adapter.build(inputs_shape)
        self.apply_base_trainable()
        self.built = True

    def _parts(self):
        """keras-hub's sublayers by name (Keras has no public getter for a layer's children)."""
        return {path[1:]: sub for path, sub in model_graph.iter_sublayers(self, "") if path.count("/") == 1}

    def apply_base_trainable(self):
        """Sets the sublayers' `trainable` flags from `base_trainable` (adapters always train).

        Setting `block.trainable` makes every sublayer follow it, as in Keras; call this
        afterwards to freeze the keras-hub part again. A frozen block stays frozen.
        """
        norms = ("self_attention_layer_norm", "feedforward_layer_norm")
        for name, sub in self._parts().items():
            if not self.trainable:
                break
            if isinstance(sub, BottleneckAdapter) or self.base_trainable == "all":
                sub.trainable = True
            else:
                sub.trainable = self.base_trainable == "layer_norms" and name in norms

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        # keras-hub's TransformerEncoder.call with the two adapters added before each residual add.
        parts = self._parts()
        self_attention_mask = model_graph.merge_padding_and_attention_mask(inputs, padding_mask, attention_mask)
        residual = inputs
        x = parts["self_attention_layer_norm"](inputs) if self.normalize_first else inputs
        x = parts["self_attention_layer"](
            query=x,
            value=x,
            attention_mask=self_attention_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        if return_attention_scores:
            x, attention_scores = x
        x = parts["self_attention_dropout"](x, training=training)
        x = self.attention_adapter(x) + residual
        if not self.normalize_first:
            x = parts["self_attention_layer_norm"](x)

        residual = x
        if self.normalize_first:
            x = parts["feedforward_layer_norm"](x)
        x = parts["feedforward_output_dense"](parts["feedforward_intermediate_dense"](x))
        x = parts["feedforward_dropout"](x, training=training)
        x = self.feedforward_adapter(x) + residual
        if not self.normalize_first:
            x = parts["feedforward_layer_norm"](x)
        if return_attention_scores:
            return x, attention_scores
        return x

    def load_encoder_weights(self, block):
        """Copies a built keras-hub `TransformerEncoder`'s weights into this built block.

        Args:
            block: a built `keras_hub.layers.TransformerEncoder` of the same configuration.

        Raises:
            ValueError: if the two blocks' weights differ in name or shape.
        """
        adapter_ids = {id(v) for v in self.attention_adapter.weights + self.feedforward_adapter.weights}
        own = [v for v in self.weights if id(v) not in adapter_ids]
        theirs = list(block.weights)
        mismatch = len(own) != len(theirs) or any(
            a.name != b.name or tuple(a.shape) != tuple(b.shape) for a, b in zip(own, theirs)
        )
        if mismatch:
            raise ValueError(
                f"`block` must be a built TransformerEncoder with the configuration of '{self.name}'. "
                f"Received: weights {[(v.name, tuple(v.shape)) for v in theirs]}, expected "
                f"{[(v.name, tuple(v.shape)) for v in own]}."
            )
        for variable, value in zip(own, block.get_weights()):
            variable.assign(value)

    def encoder_config(self):
        """The config of the plain keras-hub `TransformerEncoder` (the adapter keys removed).

        Returns:
            A dict for `keras_hub.layers.TransformerEncoder.from_config`.
        """
        config = self.get_config()
        for key in _ADAPTER_KEYS:
            config.pop(key)
        return config

    def merged_encoder_weights(self):
        """The weights of a plain `TransformerEncoder` with both (linear) adapters folded in.

        For `adapter_activation=None` and no adapter layer norm the adapter is linear,
        `x M + c` with `M = I + s W_down W_up` and `c = s (b_down W_up + b_up)`: the
        attention output projection becomes `W M`, `b M + c` (dropout is the identity at
        inference), and so does the feed-forward output projection.

        Returns:
            A list of arrays for `keras_hub.layers.TransformerEncoder(**encoder_config())`.

        Raises:
            ValueError: if an adapter has a non-linearity or a layer norm (it cannot be
                folded into the block's weights), or the block has LoRA sublayers.
        """
        sublayers = dict(model_graph.iter_sublayers(self, ""))
        projections = {
            self.attention_adapter: sublayers["/self_attention_layer/attention_output"],
            self.feedforward_adapter: sublayers["/feedforward_output_dense"],
        }
        hosts = {id(model_graph.base_weight(layer)): adapter for adapter, layer in projections.items()}
        bias_of = {id(layer.bias): adapter for adapter, layer in projections.items()}
        if model_graph.lora_layers(self):
            raise ValueError(
                f"`HoulsbyTransformerEncoder` '{self.name}' has LoRA sublayers: merge them first "
                "(keras_transfer.recipes.fold_adapters on a model without Houlsby blocks) or serve it as is."
            )
        for adapter in hosts.values():
            activation = keras.activations.serialize(adapter.activation)
            if adapter.use_layer_norm or activation != "linear":
                raise ValueError(
                    f"Adapter '{adapter.name}' of '{self.name}' cannot be folded into the block's weights: "
                    f"its {'layer norm' if adapter.use_layer_norm else f'non-linearity ({activation!r})'} "
                    "makes it more than a linear map. Only linear adapters (adapter_activation=None; "
                    "activation=None in add_adapters) without a layer norm fold; serve the adapted model otherwise."
                )
        adapter_ids = {id(v) for v in self.attention_adapter.weights + self.feedforward_adapter.weights}
        values = []
        for variable in self.weights:
            if id(variable) in adapter_ids:
                continue
            value = _np(variable)
            if id(variable) in hosts:
                value = value @ _linear_map(hosts[id(variable)])[0]
            elif id(variable) in bias_of:
                mix, shift = _linear_map(bias_of[id(variable)])
                value = value @ mix + shift
            values.append(value.astype(variable.dtype))
        return values

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bottleneck_dim": self.bottleneck_dim,
                "adapter_activation": keras.activations.serialize(self.adapter_activation),
                "adapter_use_layer_norm": self.adapter_use_layer_norm,
                "adapter_init_scale": self.adapter_init_scale,
                "base_trainable": self.base_trainable,
            }
        )
        return config


def _linear_map(adapter):
    """`(M, c)` of a linear BottleneckAdapter: `y = x M + c`."""
    scale = adapter.scale
    up = _np(adapter.up_kernel)
    mix = np.eye(up.shape[1]) + scale * (_np(adapter.down_kernel) @ up)
    shift = scale * (_np(adapter.down_bias) @ up + _np(adapter.up_bias))
    return mix, shift
