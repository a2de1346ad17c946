"""Cloze (masked language model) pre-training of a text encoder, as in BERT."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.losses.masked_token_loss import masked_token_loss
from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._finite_logs import weights_finite
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.models._self_supervised import step_seed
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.ops.masked_tokens import mask_tokens
from keras_transfer.utils import validation


def _sequence_length(encoder):
    """The encoder's number of token positions: `sequence_length`, or its declared input."""
    length = getattr(encoder, "sequence_length", None)
    if length is None and getattr(encoder, "inputs", None):
        length = encoder.inputs[0].shape[1]
    if not isinstance(encoder, keras.layers.Layer) or not isinstance(length, int):
        raise ValueError(
            "`encoder` must be a Keras layer mapping token ids (batch, length) to (batch, length, dim) with a "
            "known length: a `TextTransformerEncoder(..., pooling=None)` or a functional model with a fixed "
            f"input length. Received: encoder of type {type(encoder).__name__}"
        )
    return length


@keras.saving.register_keras_serializable(package="keras_transfer")
class MaskedLanguageModel(ExportsDeclaredInputs, TrainStepModel):
    """Pre-trains a text encoder by predicting masked tokens (BERT's cloze task).

    Each training batch of token ids is corrupted by `keras_transfer.ops.mask_tokens`
    (`mask_rate` of the non-padding positions selected; 80 % of those replaced by
    `mask_token_id`, 10 % by a random id, 10 % kept), encoded, and a head
    `Dense(dim, gelu) -> LayerNorm -> vocabulary logits` predicts the original ids;
    the loss is `keras_transfer.losses.masked_token_loss` (cross-entropy over the
    selected positions only). With `tie_weights=True` the output projection is the
    transposed input embedding of a `TextTransformerEncoder` plus a bias (as BERT).
    The masks are a function of `(seed, optimizer step)`, so a resumed or reloaded
    run draws exactly the masks the uninterrupted run would have drawn.

    `fit` takes batches of token ids (no labels); the logs hold `loss` and
    `masked_accuracy`, NaN when the weights are not finite. `call(x)` (so `predict`
    and `export()`) returns the encoder's per-token features; `token_logits(x)` the
    head's vocabulary logits. Transfer `model.encoder` (a `TextTransformerEncoder`
    with `pooling=None` shares its weights with a pooled copy via `get_weights`).

    Args:
        encoder: token ids `(batch, length)` -> `(batch, length, dim)`: a
            `TextTransformerEncoder(..., pooling=None)`, or a functional model
            with a fixed input length.
        vocabulary_size: number of token ids (0 = padding).
        mask_token_id: the id written at 80 % of the selected positions. With
            `word_tokenizer` vocabularies, reserve a word for it (its id), or use
            1 (the out-of-vocabulary id).
        mask_rate: share of non-padding positions selected, in (0, 1].
        first_random_id: smallest id a random replacement takes (skip special ids).
        tie_weights: reuse the encoder's `token_embedding` as the output projection.
        seed: non-negative int seed of the masks (None: drawn, and kept in the config).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: int token ids `(batch, length)`.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a token-level encoder of known length, an
            id argument is outside the vocabulary, `mask_rate` lies outside (0, 1],
            `tie_weights` is asked of an encoder without a `token_embedding`, or (in
            `fit` / `evaluate` on arrays) token ids lie outside [0, vocabulary_size).

    Reference:
        Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", NAACL 2019 (§3.1, appendix A.1).

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sequence_length = _sequence_length(encoder)
        self.vocabulary_size = validation.check_int_at_least("vocabulary_size", vocabulary_size, 2)
        self.mask_rate = validation.check_fraction("mask_rate", mask_rate, inclusive_low=False, inclusive_high=True)
        mask_tokens(np.zeros((1, 1), "int32"), (0, 0), mask_token_id, vocabulary_size, mask_rate, (0,), first_random_id)
        self.mask_token_id, self.first_random_id = int(mask_token_id), int(first_random_id)
        self.tie_weights = bool(tie_weights)
        if self.tie_weights and not hasattr(encoder, "token_embedding"):
            raise ValueError(
                "`tie_weights` needs an encoder with a `token_embedding` (a TextTransformerEncoder). "
                f"Received: tie_weights=True with an encoder of type {type(encoder).__name__}. Pass tie_weights=False."
            )
        self.seed = resolve_seed(seed)
        self.encoder = encoder
        if not encoder.built:
            encoder.build((None, self.sequence_length))
        output_shape = tuple(encoder.compute_output_shape((None, self.sequence_length)))
        if len(output_shape) != 3:
            raise ValueError(
                "`encoder` must return one vector per token, (batch, length, dim). Received: output shape "
                f"{output_shape}. Build TextTransformerEncoder with pooling=None."
            )
        width = int(output_shape[-1])
        self.transform = keras.layers.Dense(width, activation="gelu", name="transform")
        self.transform_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="transform_norm")
        self.transform.build((None, self.sequence_length, width))
        self.transform_norm.build((None, self.sequence_length, width))
        if self.tie_weights:
            self.output_dense = None
            self.output_bias = self.add_weight(shape=(vocabulary_size,), initializer="zeros", name="output_bias")
        else:
            self.output_dense = keras.layers.Dense(vocabulary_size, name="output_dense")
            self.output_dense.build((None, self.sequence_length, width))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="masked_accuracy")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def call(self, inputs, training=False):
        return float32_outputs(self.encoder(inputs, training=training))

    def serving_input_signature(self):
        """`export()`'s input.

        Returns:
            `[keras.InputSpec((None, sequence_length), "int32")]`: token ids.
        """
        return [keras.InputSpec(shape=(None, self.sequence_length), dtype="int32")]

    def token_logits(self, inputs, training=False):
        """The head's vocabulary logits at every position (fill-in-the-blank predictions).

        Args:
            inputs: int token ids `(batch, length)` (masked or not).
            training: whether the encoder runs in training mode.

        Returns:
            float32 logits `(batch, length, vocabulary_size)`.
        """
        h = self.transform_norm(self.transform(self.encoder(inputs, training=training)))
        if self.tie_weights:
            table = ops.cast(self.encoder.token_embedding.embeddings, h.dtype)
            logits = ops.einsum("bld,vd->blv", h, table) + ops.cast(self.output_bias, h.dtype)
        else:
            logits = self.output_dense(h)
        return ops.cast(logits, "float32")

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
            token_ids, seed, self.mask_token_id, self.vocabulary_size, self.mask_rate, (0,), self.first_random_id
        )

    def _loss(self, data, training):
        token_ids, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        token_ids = ops.cast(token_ids, "int32")
        masked, selected = self.masked_batch(token_ids, training=training)
        logits = self.token_logits(masked, training=training)
        loss = masked_token_loss(token_ids, logits, selected)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), token_ids), "float32")
        return loss, correct, selected

    def _report(self, loss, correct, selected):
        finite = weights_finite(self)
        self.loss_tracker.update_state(nan_unless(finite, loss))
        self.accuracy_tracker.update_state(nan_unless(finite, correct), sample_weight=selected)
        return self.get_metrics_result()

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, correct, selected = self._loss(data, training=True)
            total = loss + (ops.sum(self.losses) if self.losses else 0.0)
            scaled = self.optimizer.scale_loss(total / tf.distribute.get_strategy().num_replicas_in_sync)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._report(loss, correct, selected)

    def test_step(self, data):
        return self._report(*self._loss(data, training=False))

    def _check_ids(self, x):
        if isinstance(x, np.ndarray) and x.size and (x.min() < 0 or x.max() >= self.vocabulary_size):
            raise ValueError(
                f"`x` must hold token ids in [0, vocabulary_size={self.vocabulary_size}). Received: ids from "
                f"{x.min()} to {x.max()}. Tokenize with the vocabulary the encoder was built for."
            )

    def fit(self, x=None, *args, **kwargs):
        self._check_ids(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_ids(x)
        return super().evaluate(x, *args, **kwargs)

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
            }
        )
        return config
