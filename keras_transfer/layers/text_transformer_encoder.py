"""A small pre-LayerNorm transformer text encoder on Keras core layers.

Token ids `(batch, sequence_length)` with 0 as padding (the convention of
`keras.layers.TextVectorization`) -> one pooled vector per text
`(batch, embedding_dim)`: token + learned position (+ optional segment, as
BERT's sentence A / B) embeddings, `num_layers`
blocks of (LayerNorm, masked multi-head self-attention, residual, LayerNorm,
GELU MLP, residual) as in CLIP's text transformer, a final LayerNorm and a
mean over the non-padding positions. Keras core has MultiHeadAttention but no
transformer block or token+position embedding (keras-hub has them); this
layer uses core only so the CLIP text side works without keras-hub.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextTransformerEncoder(keras.layers.Layer):
    """Transformer text tower: int token ids -> pooled float embedding.

    Token and learned position embeddings, `num_layers` pre-LayerNorm blocks
    (masked multi-head self-attention and a GELU MLP, each with a residual), a
    final LayerNorm and a mean over the non-padding positions (id 0 is padding,
    as in `keras.layers.TextVectorization`).

    Args:
        vocabulary_size: number of token ids (ids lie in `[0, vocabulary_size)`,
            0 = padding), at least 2.
        sequence_length: maximum number of tokens (position embeddings).
        embedding_dim: width of the model and of the output.
        num_layers: transformer blocks (0 or more).
        num_heads: attention heads; must divide `embedding_dim`.
        intermediate_dim: hidden width of the MLP (default `4 * embedding_dim`).
        dropout: dropout rate in attention and MLP, in [0, 1).
        pooling: "mean" (the mean over the non-padding positions: one vector per
            text) or None (one vector per token, `(batch, length, embedding_dim)`,
            for token-level heads such as a masked language model).
        num_segments: None (token ids only), or the number of segments (2 for
            BERT's sentence pairs): a learned segment embedding is added, and the
            layer takes `{"token_ids": ..., "segment_ids": ...}` as keras-hub's
            `BertBackbone` does (plain token ids still work: segment 0 everywhere).
        adapter_dim: None (no adapters) or the bottleneck width of two
            `BottleneckAdapter`s per block (Houlsby et al.'s placement): one after the
            attention output, one after the MLP output, each before its residual add.
            They start as the identity (zero up-projection), so weights copied from an
            encoder without adapters give the same outputs; with a ReLU between their
            projections they do not fold into the block's weights.
        frozen: names of sublayers (and "position_embedding") that are not trainable,
            as `get_config()` records them, so that a partly frozen encoder (e.g.
            `fine_tune(blocks="last")`) reloads from `.keras` partly frozen. Names:
            `frozen_names()` of an encoder of the same shape.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        token_ids: int tensor `(batch, length)` with `length <= sequence_length`,
            or (with `num_segments`) a dict `{"token_ids": ..., "segment_ids": ...}`
            of two such tensors, segment ids in `[0, num_segments)`.
        training: whether dropout is applied.

    Raises:
        ValueError: if an argument is out of range or `num_heads` does not divide
            `embedding_dim`; when built, if the input is not `(batch, length)`
            with `length <= sequence_length`, or a dict without `num_segments`;
            when called eagerly, if segment ids lie outside `[0, num_segments)`.

    Reference:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Radford et
        al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021; Devlin et al., "BERT: Pre-training of Deep
        Bidirectional Transformers for Language Understanding", NAACL 2019
        (segment embeddings, §3).

    Example:

    >>> encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     vocabulary_size=100, sequence_length=8, embedding_dim=16, num_layers=1, num_heads=2)
    >>> token_ids = np.array([[5, 7, 2, 0, 0, 0, 0, 0]])
    >>> tuple(encoder(token_ids).shape)
    (1, 16)
    >>> pairs = keras_transfer.layers.TextTransformerEncoder(
    ...     vocabulary_size=100, sequence_length=8, embedding_dim=16, num_heads=2, num_segments=2)
    >>> segment_ids = np.array([[0, 0, 1, 0, 0, 0, 0, 0]])
    >>> tuple(pairs({"token_ids": token_ids, "segment_ids": segment_ids}).shape)
    (1, 16)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim=64,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        dropout=0.0,
        pooling="mean",
        num_segments=None,
        adapter_dim=None,
        frozen=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in ("mean", None):
            raise ValueError(
                "`pooling` must be 'mean' (one vector per text) or None (one vector per token). "
                f"Received: pooling={pooling!r}"
            )
        self.pooling = pooling
        self.vocabulary_size = validation.check_int_at_least("vocabulary_size", vocabulary_size, 2)
        self.sequence_length = validation.check_positive_int("sequence_length", sequence_length)
        self.embedding_dim = validation.check_positive_int("embedding_dim", embedding_dim)
        self.num_layers = validation.check_non_negative_int("num_layers", num_layers)
        self.num_heads = validation.check_positive_int("num_heads", num_heads)
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                "`num_heads` must divide `embedding_dim`. Received: num_heads="
                f"{num_heads}, embedding_dim={embedding_dim}. Pick e.g. num_heads=1, 2 or 4."
            )
        self.intermediate_dim = validation.check_positive_int(
            "intermediate_dim", 4 * self.embedding_dim if intermediate_dim is None else intermediate_dim
        )
        self.dropout = validation.check_fraction("dropout", dropout)
        if num_segments is not None:
            num_segments = validation.check_positive_int("num_segments", num_segments)
        self.num_segments = num_segments
        self.supports_masking = False

        dtype = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, dtype=dtype, name="token_embedding"
        )
        self.segment_embedding = None
        if self.num_segments is not None:
            self.segment_embedding = keras.layers.Embedding(
                self.num_segments, self.embedding_dim, dtype=dtype, name="segment_embedding"
            )
        # One list per sub-layer kind (Keras tracks lists of layers).
        n = range(self.num_layers)
        self.attention_norms = [
            keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name=f"block{i}_ln1") for i in n
        ]
        self.attentions = [
            keras.layers.MultiHeadAttention(
                self.num_heads,
                self.embedding_dim // self.num_heads,
                dropout=self.dropout,
                dtype=dtype,
                name=f"block{i}_attention",
            )
            for i in n
        ]
        self.mlp_norms = [keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name=f"block{i}_ln2") for i in n]
        self.mlp_ins = [
            keras.layers.Dense(self.intermediate_dim, activation="gelu", dtype=dtype, name=f"block{i}_mlp_in")
            for i in n
        ]
        self.mlp_outs = [keras.layers.Dense(self.embedding_dim, dtype=dtype, name=f"block{i}_mlp_out") for i in n]
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=dtype, name="dropout")
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name="final_ln")
        # Houlsby adapters (after the attention and the MLP outputs), created last so their
        # weights follow the encoder's own in `weights`.
        self._make_adapters(adapter_dim, dtype)
        self._frozen = self._check_frozen(frozen or ())

    def _named_sublayers(self):
        """`{name: sublayer}` in a fixed order (the names `frozen` takes)."""
        named = {"token_embedding": self.token_embedding}
        if self.segment_embedding is not None:
            named["segment_embedding"] = self.segment_embedding
        for attribute in ("attention_norms", "attentions", "mlp_norms", "mlp_ins", "mlp_outs"):
            named.update({f"{attribute}.{i}": layer for i, layer in enumerate(getattr(self, attribute))})
        named["final_norm"] = self.final_norm
        for attribute in ("attention_adapters", "mlp_adapters"):
            named.update({f"{attribute}.{i}": layer for i, layer in enumerate(getattr(self, attribute))})
        return named

    def frozen_names(self):
        """Names of the sublayers (and "position_embedding") that are not trainable now.

        Returns:
            A list of names, the `frozen` argument that recreates this freezing.
        """
        names = [name for name, layer in self._named_sublayers().items() if not layer.trainable]
        position = getattr(self, "position_embedding", None)
        if position is not None and not position.trainable:
            names.append("position_embedding")
        return names

    def _check_frozen(self, frozen):
        named = self._named_sublayers()
        frozen = list(frozen)
        unknown = sorted(set(frozen) - set(named) - {"position_embedding"})
        if unknown:
            raise ValueError(
                f"`frozen` must name sublayers of this encoder ({', '.join(named)} or position_embedding). "
                f"Received: frozen={frozen!r}, unknown {unknown}."
            )
        return frozen

    def _freeze_recorded(self):
        """Freezes what `frozen` named, once the variables exist (Keras sets `trainable` on the
        variables present when it is assigned: sublayers' variables are created in `build`)."""
        named = self._named_sublayers()
        for name in self._frozen:
            if name == "position_embedding":
                self.position_embedding.trainable = False
            else:
                named[name].trainable = False

    def _make_adapters(self, adapter_dim, dtype):
        """Sets `adapter_dim` and the two adapter lists (empty without adapters)."""
        self.adapter_dim = None
        if adapter_dim is not None:
            self.adapter_dim = validation.check_positive_int("adapter_dim", adapter_dim)
            if self.adapter_dim > self.embedding_dim:
                raise ValueError(
                    f"`adapter_dim` must be at most `embedding_dim` ({self.embedding_dim}). "
                    f"Received: adapter_dim={adapter_dim}. An adapter is a bottleneck."
                )
        adapter_blocks = range(self.num_layers) if self.adapter_dim is not None else range(0)
        self.attention_adapters = [
            BottleneckAdapter(self.adapter_dim, dtype=dtype, name=f"block{i}_attention_adapter") for i in adapter_blocks
        ]
        self.mlp_adapters = [
            BottleneckAdapter(self.adapter_dim, dtype=dtype, name=f"block{i}_mlp_adapter") for i in adapter_blocks
        ]

    def _split_inputs(self, inputs):
        """`(token_ids, segment_ids or None)` from plain ids or a `{"token_ids", "segment_ids"}` dict."""
        if not isinstance(inputs, dict):
            return inputs, None
        if self.num_segments is None or "token_ids" not in inputs or set(inputs) - {"token_ids", "segment_ids"}:
            raise ValueError(
                "`TextTransformerEncoder` takes a dict {'token_ids', 'segment_ids'} only when built with "
                f"num_segments (e.g. 2 for sentence pairs). Received: keys {sorted(inputs)} with "
                f"num_segments={self.num_segments}. Pass plain token ids or set num_segments."
            )
        return inputs["token_ids"], inputs.get("segment_ids")

    def _check_token_ids(self, token_ids):
        """Ids outside [0, vocabulary_size) fail: a ValueError when eager, an error naming the range in a
        graph (a negative id would otherwise index the embedding from the end, silently)."""
        fix = "Tokenize with the vocabulary the encoder was built for."
        if isinstance(token_ids, keras.KerasTensor):
            return token_ids
        if tf.executing_eagerly():
            values = ops.convert_to_numpy(token_ids)
            if values.size and (values.min() < 0 or values.max() >= self.vocabulary_size):
                raise ValueError(
                    f"`token_ids` must lie in [0, vocabulary_size={self.vocabulary_size}). Received: ids from "
                    f"{values.min()} to {values.max()}. {fix}"
                )
            return token_ids
        message = f"`token_ids` must lie in [0, vocabulary_size={self.vocabulary_size}). {fix}"
        checks = [
            tf.debugging.assert_non_negative(token_ids, message=message),
            tf.debugging.assert_less(token_ids, tf.cast(self.vocabulary_size, token_ids.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(token_ids)

    def _check_segments(self, segment_ids):
        """Out-of-range segment ids give a ValueError when eager (a graph would index out of range)."""
        if not tf.executing_eagerly() or isinstance(segment_ids, keras.KerasTensor):
            return
        values = ops.convert_to_numpy(segment_ids)
        if values.size and (values.min() < 0 or values.max() >= self.num_segments):
            raise ValueError(
                f"`segment_ids` must lie in [0, num_segments={self.num_segments}). Received: segment ids from "
                f"{values.min()} to {values.max()}. Number the sentences of a pair 0 and 1."
            )

    def build(self, input_shape):
        input_shape, segment_shape = self._split_inputs(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                "`TextTransformerEncoder` expects token ids of shape (batch, sequence_length). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        length = input_shape[1]
        if length is not None and length > self.sequence_length:
            raise ValueError(
                f"`sequence_length` must be >= the number of tokens. Received: sequence_length="
                f"{self.sequence_length} for inputs with {length} tokens. Raise sequence_length or "
                "tokenize with output_sequence_length <= sequence_length."
            )
        width = (None, length, self.embedding_dim)
        self.token_embedding.build(input_shape)
        self.position_embedding = self.add_weight(
            shape=(self.sequence_length, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )
        if self.segment_embedding is not None:
            self.segment_embedding.build(input_shape if segment_shape is None else segment_shape)
        for i in range(self.num_layers):
            self.attention_norms[i].build(width)
            self.attentions[i].build(width, width)
            self.mlp_norms[i].build(width)
            self.mlp_ins[i].build(width)
            self.mlp_outs[i].build((None, length, self.intermediate_dim))
        for adapter in self.attention_adapters + self.mlp_adapters:
            adapter.build(width)
        self.final_norm.build(width)
        self._freeze_recorded()
        self.built = True

    def call(self, token_ids, training=None):
        token_ids, segment_ids = self._split_inputs(token_ids)
        token_ids = self._check_token_ids(ops.cast(token_ids, "int32"))
        length = ops.shape(token_ids)[1]
        padding = ops.not_equal(token_ids, 0)
        x = self.token_embedding(token_ids)
        x = x + ops.cast(self.position_embedding[None, :length, :], x.dtype)
        if self.segment_embedding is not None:
            if segment_ids is None:  # plain token ids: one segment
                segment_ids = ops.zeros_like(token_ids)
            self._check_segments(segment_ids)
            x = x + self.segment_embedding(ops.cast(segment_ids, "int32"))
        # Query i may attend to key j when j is a real token.
        attention_mask = ops.logical_and(padding[:, :, None], padding[:, None, :])
        for i in range(self.num_layers):
            h = self.attention_norms[i](x)
            h = self.attentions[i](h, h, attention_mask=attention_mask, training=training)
            h = self.dropout_layer(h, training=training)
            x = x + (self.attention_adapters[i](h) if self.adapter_dim is not None else h)
            h = self.mlp_outs[i](self.mlp_ins[i](self.mlp_norms[i](x)))
            h = self.dropout_layer(h, training=training)
            x = x + (self.mlp_adapters[i](h) if self.adapter_dim is not None else h)
        x = self.final_norm(x)
        if self.pooling is None:
            return x
        weights = ops.cast(padding, x.dtype)[:, :, None]
        count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1.0, x.dtype))
        return ops.sum(x * weights, axis=1) / count

    def compute_output_shape(self, input_shape):
        input_shape, _ = self._split_inputs(input_shape)
        if self.pooling is None:
            return (input_shape[0], input_shape[1], self.embedding_dim)
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "num_segments": self.num_segments,
                "adapter_dim": self.adapter_dim,
                "frozen": self.frozen_names(),
            }
        )
        return config
