"""Cloze (masked language model) and next-sentence pre-training of a text encoder, as in BERT."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.losses.masked_token_loss import masked_token_loss
from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._finite_logs import weights_finite
from keras_transfer.models._masked_language_inputs import check_arrays
from keras_transfer.models._masked_language_inputs import dict_input_encoder
from keras_transfer.models._masked_language_inputs import has_pooled_output
from keras_transfer.models._masked_language_inputs import padding_mask
from keras_transfer.models._masked_language_inputs import require_next_sentence_labels
from keras_transfer.models._masked_language_inputs import sequence_length
from keras_transfer.models._masked_language_inputs import sequence_width
from keras_transfer.models._masked_language_inputs import split_inputs
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.models._self_supervised import step_seed
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.ops.masked_tokens import mask_tokens
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class MaskedLanguageModel(ExportsDeclaredInputs, TrainStepModel):
    """Pre-trains a text encoder by predicting masked tokens (BERT's cloze task), and next sentences.

    Each training batch of token ids is corrupted by `keras_transfer.ops.mask_tokens`
    (`mask_rate` of the maskable positions selected; 80 % of those replaced by
    `mask_token_id`, 10 % by a random id, 10 % kept), encoded, and a head
    `Dense(dim, gelu) -> LayerNorm -> vocabulary logits` predicts the original ids;
    the loss is `keras_transfer.losses.masked_token_loss`'s (cross-entropy over the
    selected positions only). With `tie_weights=True` the output projection is the
    transposed input embedding of the encoder (`encoder.token_embedding`) plus a
    bias (as BERT). The masks are a function of `(seed, optimizer step)`, so a
    resumed or reloaded run draws exactly the masks the uninterrupted run would have drawn.

    With `next_sentence=True` (BERT's second task) `fit` takes `(inputs, is_next)`
    batches, `inputs = {"token_ids", "segment_ids"}` of `[CLS] A [SEP] B [SEP]` pairs
    (`keras_transfer.datasets.sentence_pairs`); the first position's feature of the
    masked pair goes through a pooler `Dense(dim, tanh)` (a keras-hub backbone's own
    `pooled_output` instead) and `Dense(2)`, and the loss is the sum of the cloze loss
    and the next-sentence cross-entropy, as in BERT. One model rather than a second
    class: both tasks share the masked forward pass.

    Encoders: a `TextTransformerEncoder(..., pooling=None)` (with `num_segments=2`
    for sentence pairs), a functional model of token ids, or a keras-hub backbone
    with dict inputs `{token_ids, segment_ids, padding_mask}` and a `sequence_output`
    (e.g. `keras_hub.models.BertBackbone`; its `padding_mask` is `token_ids != 0`).

    `fit` takes token ids, or a dict `{"token_ids", "segment_ids"}` (a `padding_mask`
    key is accepted and ignored: padding is id 0). The logs hold `loss` and
    `masked_accuracy`, plus `masked_loss`, `next_sentence_loss` and
    `next_sentence_accuracy` with `next_sentence=True`; NaN when the weights are not
    finite. `call(x)` (so `predict` and `export()`) returns the encoder's per-token
    features; `token_logits(x)` the vocabulary logits, `next_sentence_logits(x)` the
    is-next logits. Transfer `model.encoder`.

    Args:
        encoder: token ids `(batch, length)` -> `(batch, length, dim)`, as above.
        vocabulary_size: number of token ids (0 = padding).
        mask_token_id: the id written at 80 % of the selected positions. With
            `word_tokenizer` vocabularies, reserve a word for it (its id), or use
            1 (the out-of-vocabulary id).
        mask_rate: share of maskable positions selected, in (0, 1].
        first_random_id: smallest id a random replacement takes (skip special ids).
        tie_weights: reuse the encoder's `token_embedding` as the output projection.
        seed: non-negative int seed of the masks (None: drawn, and kept in the config).
        next_sentence: also train next-sentence prediction (needs segment ids).
        unmaskable_ids: ids never selected for masking besides padding 0, such as
            the `[CLS]` / `[SEP]` ids of sentence pairs (`(2, 3)` with the defaults
            of `sentence_pairs`; then also `first_random_id=4`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: int token ids `(batch, length)`, or a dict `{"token_ids", "segment_ids"}`.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a token-level encoder of known length, an
            id argument is outside the vocabulary, `mask_rate` lies outside (0, 1],
            `tie_weights` is asked of an encoder without a matching `token_embedding`,
            `next_sentence` of an encoder without segments, or (in `fit` / `evaluate`
            on arrays) token or segment ids are out of range, a sequence holds nothing
            to mask, or next-sentence labels are missing or not 0 / 1.

    Reference:
        Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", NAACL 2019 (§3.1, appendix A.1, A.2).

    Example:

    >>> encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     vocabulary_size=12, sequence_length=6, embedding_dim=8, num_layers=1, num_heads=2, pooling=None)
    >>> model = keras_transfer.models.MaskedLanguageModel(encoder, vocabulary_size=12, seed=0)
    >>> model.compile(optimizer="adam")
    >>> ids = np.random.default_rng(0).integers(2, 12, size=(16, 6))
    >>> sorted(model.fit(ids, batch_size=8, epochs=1, verbose=0).history)
    ['loss', 'masked_accuracy']
    >>> tuple(model.token_logits(ids[:2]).shape)
    (2, 6, 12)
    """

    keras_object_args = ("encoder",)

    def __init__(
        self,
        encoder,
        vocabulary_size,
        mask_token_id=1,
        mask_rate=0.15,
        first_random_id=2,
        tie_weights=True,
        seed=None,
        next_sentence=False,
        unmaskable_ids=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length(encoder)
        self.vocabulary_size = validation.check_int_at_least("vocabulary_size", vocabulary_size, 2)
        self.mask_rate = validation.check_fraction("mask_rate", mask_rate, inclusive_low=False, inclusive_high=True)
        mask_tokens(np.zeros((1, 1), "int32"), (0, 0), mask_token_id, vocabulary_size, mask_rate, (0,), first_random_id)
        self.mask_token_id, self.first_random_id = int(mask_token_id), int(first_random_id)
        self.unmaskable_ids = self._check_unmaskable(unmaskable_ids)
        self.seed = resolve_seed(seed)
        self.encoder = encoder
        self.dict_inputs = dict_input_encoder(encoder)  # keras-hub: {token_ids, segment_ids, padding_mask}
        self.num_segments = getattr(encoder, "num_segments", None)
        self.next_sentence = bool(next_sentence)
        if self.next_sentence and (self.num_segments or 0) < 2:
            raise ValueError(
                "`next_sentence` needs an encoder with segment embeddings. Received: next_sentence=True with "
                f"num_segments={self.num_segments}. Build TextTransformerEncoder(..., num_segments=2)."
            )
        width = sequence_width(encoder, self.sequence_length)
        self.tie_weights = bool(tie_weights)
        self._check_tied(width)
        self._build_heads(width)

    def _check_unmaskable(self, unmaskable_ids):
        ids = sorted({0, *(int(i) for i in unmaskable_ids)})
        if ids[0] < 0 or ids[-1] >= self.vocabulary_size:
            raise ValueError(
                f"`unmaskable_ids` must be ids in [0, vocabulary_size={self.vocabulary_size}). "
                f"Received: unmaskable_ids={tuple(unmaskable_ids)!r}"
            )
        return tuple(ids)

    def _check_tied(self, width):
        if not self.tie_weights:
            return
        embedding = getattr(self.encoder, "token_embedding", None)
        shape = tuple(getattr(getattr(embedding, "embeddings", None), "shape", ()))
        if shape != (self.vocabulary_size, width):
            raise ValueError(
                "`tie_weights` needs an encoder with a `token_embedding` of shape (vocabulary_size, dim) = "
                f"{(self.vocabulary_size, width)} (a TextTransformerEncoder or keras-hub backbone). Received: "
                f"tie_weights=True with an encoder of type {type(self.encoder).__name__} and embedding shape "
                f"{shape or None}. Pass tie_weights=False or the encoder's vocabulary_size."
            )

    def _build_heads(self, width):
        per_token = (None, self.sequence_length, width)
        self.transform = keras.layers.Dense(width, activation="gelu", name="transform")
        self.transform_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="transform_norm")
        self.transform.build(per_token)
        self.transform_norm.build(per_token)
        self.output_dense = None
        if self.tie_weights:
            self.output_bias = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros", name="output_bias")
        else:
            self.output_dense = keras.layers.Dense(self.vocabulary_size, name="output_dense")
            self.output_dense.build(per_token)
        self.pooler = self.next_sentence_dense = None
        if self.next_sentence:
            if not has_pooled_output(self.encoder):
                self.pooler = keras.layers.Dense(width, activation="tanh", name="pooler")
                self.pooler.build((None, width))
            self.next_sentence_dense = keras.layers.Dense(2, name="next_sentence_dense")
            self.next_sentence_dense.build((None, width))
        names = ["loss", "masked_accuracy"]
        if self.next_sentence:
            names += ["masked_loss", "next_sentence_loss", "next_sentence_accuracy"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def encode(self, inputs, training=False):
        """The encoder's `(per-token features, pooled output or None)` for token ids or an input dict.

        Args:
            inputs: int token ids `(batch, length)` or a dict `{"token_ids", "segment_ids"}`.
            training: whether the encoder runs in training mode.

        Returns:
            `(sequence, pooled)`: `(batch, length, dim)` features, and a keras-hub
            backbone's `pooled_output` (None for other encoders).
        """
        token_ids, segment_ids = split_inputs(inputs, self.num_segments)
        token_ids = ops.cast(token_ids, "int32")
        if self.dict_inputs:
            segment_ids = ops.zeros_like(token_ids) if segment_ids is None else ops.cast(segment_ids, "int32")
            features = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask(token_ids)}
            outputs = self.encoder(features, training=training)
        elif segment_ids is not None:
            outputs = self.encoder({"token_ids": token_ids, "segment_ids": segment_ids}, training=training)
        else:
            outputs = self.encoder(token_ids, training=training)
        if isinstance(outputs, dict):
            return outputs["sequence_output"], outputs.get("pooled_output")
        return outputs, None

    def call(self, inputs, training=False):
        return float32_outputs(self.encode(inputs, training=training)[0])

    def serving_input_signature(self):
        """`export()`'s input.

        Returns:
            `[int32 (None, sequence_length) spec]` for token ids, or `[{"token_ids": spec,
            "segment_ids": spec}]` when the encoder has segment embeddings.
        """
        shape = (None, self.sequence_length)
        if self.num_segments:
            names = ("token_ids", "segment_ids")
            return [{name: keras.InputSpec(shape=shape, dtype="int32", name=name) for name in names}]
        return [keras.InputSpec(shape=shape, dtype="int32")]

    def _vocabulary_logits(self, sequence):
        h = self.transform_norm(self.transform(sequence))
        if self.tie_weights:
            table = ops.cast(self.encoder.token_embedding.embeddings, h.dtype)
            logits = ops.einsum("bld,vd->blv", h, table) + ops.cast(self.output_bias, h.dtype)
        else:
            logits = self.output_dense(h)
        return float32_outputs(logits)

    def _next_sentence_logits(self, sequence, pooled):
        if self.pooler is not None:
            pooled = self.pooler(sequence[:, 0, :])
        return float32_outputs(self.next_sentence_dense(pooled))

    def token_logits(self, inputs, training=False):
        """The head's vocabulary logits at every position (fill-in-the-blank predictions).

        Args:
            inputs: int token ids `(batch, length)` (masked or not), or an input dict.
            training: whether the encoder runs in training mode.

        Returns:
            logits `(batch, length, vocabulary_size)`, float32 under mixed precision.
        """
        return self._vocabulary_logits(self.encode(inputs, training=training)[0])

    def next_sentence_logits(self, inputs, training=False):
        """The is-next logits of sentence pairs (index 1: B follows A); needs `next_sentence=True`.

        Args:
            inputs: a dict `{"token_ids", "segment_ids"}` of `[CLS] A [SEP] B [SEP]` pairs.
            training: whether the encoder runs in training mode.

        Returns:
            logits `(batch, 2)`, float32 under mixed precision.

        Raises:
            ValueError: if the model was built with `next_sentence=False`.
        """
        if not self.next_sentence:
            raise ValueError(
                "`next_sentence_logits` needs a next-sentence head. Received: a model built with "
                "next_sentence=False. Build it with next_sentence=True."
            )
        return self._next_sentence_logits(*self.encode(inputs, training=training))

    def masked_batch(self, token_ids, training=True):
        """This step's corrupted ids and selection (`keras_transfer.ops.mask_tokens`).

        Args:
            token_ids: int token ids `(batch, length)`.
            training: training masks (a function of `(seed, optimizer step)`), or the
                evaluation stream of their own.

        Returns:
            `(masked_ids, selected)` as `mask_tokens` returns them.
        """
        step = self.optimizer.iterations if getattr(self, "optimizer", None) is not None else 0
        seed = tf.random.experimental.stateless_fold_in(step_seed(self.seed, step), 0 if training else 1)
        return mask_tokens(
            token_ids,
            seed,
            self.mask_token_id,
            self.vocabulary_size,
            self.mask_rate,
            self.unmaskable_ids,
            self.first_random_id,
        )

    def _loss(self, data, training):
        """`(total loss, {tracker name: (value, weight)})` of one batch."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        token_ids, segment_ids = split_inputs(x, self.num_segments)
        token_ids = ops.cast(token_ids, "int32")
        masked, selected = self.masked_batch(token_ids, training=training)
        inputs = masked if segment_ids is None else {"token_ids": masked, "segment_ids": segment_ids}
        sequence, pooled = self.encode(inputs, training=training)
        logits = self._vocabulary_logits(sequence)
        loss = masked_token_loss(token_ids, logits, selected)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), token_ids), "float32")
        parts = {"masked_accuracy": (correct, selected)}
        if not self.next_sentence:
            return loss, {"loss": (loss, None), **parts}
        require_next_sentence_labels(y)
        is_next = ops.reshape(ops.cast(y, "int32"), (-1,))
        pair_logits = self._next_sentence_logits(sequence, pooled)
        pair_loss = ops.mean(keras.losses.sparse_categorical_crossentropy(is_next, pair_logits, from_logits=True))
        pair_correct = ops.cast(ops.equal(ops.cast(ops.argmax(pair_logits, axis=-1), "int32"), is_next), "float32")
        total = loss + ops.cast(pair_loss, loss.dtype)
        parts.update(
            masked_loss=(loss, None), next_sentence_loss=(pair_loss, None), next_sentence_accuracy=(pair_correct, None)
        )
        return total, {"loss": (total, None), **parts}

    def _report(self, parts):
        finite = weights_finite(self)
        for name, (value, weight) in parts.items():
            self.trackers[name].update_state(nan_unless(finite, value), sample_weight=weight)
        return self.get_metrics_result()

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, parts = self._loss(data, training=True)
            total = loss + (ops.sum(self.losses) if self.losses else 0.0)
            scaled = self.optimizer.scale_loss(total / tf.distribute.get_strategy().num_replicas_in_sync)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        # A backbone's sentence pooler (keras-hub BERT's `pooled_dense`) is unused without the
        # next-sentence head: leave it out rather than warn "Gradients do not exist" every step.
        used = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply([g for g, _ in used], [v for _, v in used])
        return self._report(parts)

    def test_step(self, data):
        return self._report(self._loss(data, training=False)[1])

    def _check(self, x, y):
        check_arrays(x, y, self.vocabulary_size, self.num_segments, self.unmaskable_ids, self.next_sentence)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check(x, y)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "mask_token_id": self.mask_token_id,
                "mask_rate": self.mask_rate,
                "first_random_id": self.first_random_id,
                "tie_weights": self.tie_weights,
                "seed": self.seed,
                "next_sentence": self.next_sentence,
                "unmaskable_ids": [i for i in self.unmaskable_ids if i != 0],
            }
        )
        return config
