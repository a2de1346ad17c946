"""CLIP: contrastive image-text pre-training (Radford et al., 2021) as a `keras.Model`.

Two towers (any Keras image model, any Keras text model over token ids), a
linear projection each to `projection_dim`, unit-normalised embeddings, and a
learned logit scale: `logits = exp(s) * I @ T^T`, trained with the symmetric
cross-entropy (`keras_transfer.losses.clip_loss`). The variable holds the log `s`
(`model.log_logit_scale`); `model.logit_scale` is the multiplier `exp(s)`, the value
`clip_loss` takes (`get_logit_scale()`: the same as a Python float, for `ZeroShotHead`).
`s` starts at ln(1 / 0.07) and is clamped to [0, ln 100] after every optimizer step (as open_clip does),
so `exp(s)` never overflows, also under `mixed_float16` (the scale is a float32
variable and the logits and loss are float32). `loss_type="siglip"` trains with
SigLIP's pairwise sigmoid loss instead (`keras_transfer.losses.siglip_loss`, a learned
bias `b` added to the logits), and `chunk_size` with gradient caching
(`keras_transfer.ops.gradient_cache`) for batches larger than the towers'
activations fit in memory.

Under a `tf.distribute` strategy every replica gathers the embeddings of all
replicas with gradients kept (`keras_transfer.utils.distributed`), so the
negatives of each pair span the global batch and a step on R replicas equals a
step on one device with the whole batch.

keras-hub's `CLIPBackbone` has the towers and the logits but no loss, no
training step and no zero-shot builder; `CLIP.from_keras_hub` wraps one.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.layers.sequence_pooling import SequencePooling
from keras_transfer.models._clip_support import ClampValue
from keras_transfer.models._clip_support import check_clip_data
from keras_transfer.models._clip_support import clip_from_keras_hub
from keras_transfer.models._clip_support import clip_serving_signature
from keras_transfer.models._clip_support import contrastive_loss_and_stats
from keras_transfer.models._clip_support import unpack_clip_batch
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.ops.gradient_cache import gradient_cache
from keras_transfer.ops.numerics import l2_normalize
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class CLIP(ExportsDeclaredInputs, TrainStepModel):
    """Two-tower contrastive image-text model with its own `train_step`.

    `fit` takes no labels (`fit(x)`, `fit(images, token_ids)` or datasets of `x`).
    `call` returns the unit-norm float32 `{"image_embeddings", "text_embeddings"}`. Metrics: `loss`,
    `image_to_text_accuracy`, `text_to_image_accuracy` (top-1 within the batch)
    and the current `logit_scale` (the multiplier). A step whose logits or updated
    weights are not finite logs NaN for all of them (`TerminateOnNaN` stops there).

    `export()` works straight after `fit` and after `.keras` reload: the serving
    signature takes `{"images": float32, "token_ids": int32}` (also the input names of
    `serving_default`; the text encoder's own `Input` dtype when it declares one, e.g.
    keras-hub's int32 ids), and the `serve` endpoint takes the ids as int32 or int64
    (a `TextVectorization` tokenizer's, `word_tokenizer`).

    Args:
        image_encoder: a Keras model/layer, images -> features `(batch, d_i)`
            (or a feature map / token sequence, pooled by `image_pooling`).
        text_encoder: a Keras model/layer, int token ids `(batch, length)` ->
            features `(batch, d_t)` (or a sequence, pooled by `text_pooling`),
            e.g. `keras_transfer.layers.TextTransformerEncoder`.
        projection_dim: size of the shared embedding space.
        logit_scale_init: initial multiplier on cosine similarities
            (1 / temperature); stored as its log. Default: CLIP's 1 / 0.07, or SigLIP's
            10 with `loss_type="siglip"`.
        max_logit_scale: clamp of the multiplier after each step (CLIP: 100).
        image_pooling: `SequencePooling` mode of the image features ("auto", "mean",
            "first").
        text_pooling: `SequencePooling` mode of the text features ("auto", "mean",
            "first", "argmax_token").
        loss_type: "clip" (the symmetric softmax cross-entropy over the batch) or
            "siglip" (Zhai et al. 2023: every pair an independent sigmoid, logits
            `exp(s) * I @ T^T + b` with a learned float32 bias `b`, `model.logit_bias`).
        logit_bias_init: the initial bias `b` of "siglip" (the paper: -10, so the N - 1
            negatives of a row do not dominate the first steps); unused by "clip".
        chunk_size: None, or gradient caching (Gao et al. 2021): `fit` embeds the pairs
            `chunk_size` at a time without their graphs, takes the loss and its gradient
            with respect to the embeddings on the whole (global) batch, then
            back-propagates chunk by chunk: activation memory is one chunk's, for about
            one extra forward pass. The step equals the unchunked one for towers without
            batch-coupled layers (BatchNorm in training mode sees chunk statistics).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: `{"images": ..., "token_ids": ...}` or a tuple `(images, token_ids)`.
        training: whether the towers run in training mode.

    Attributes:
        log_logit_scale: the trained float32 variable `s` (the LOG of the multiplier),
            clamped to [0, ln max_logit_scale].
        logit_scale: the multiplier `exp(s)` as a float32 tensor: pass this to
            `clip_loss(..., logit_scale)`. `get_logit_scale()` is the same as a Python float.
        logit_bias: SigLIP's trained float32 bias variable, None for "clip".

    Raises:
        ValueError: if an encoder is not a Keras layer or model, a size or scale is not
            positive, `logit_scale_init` lies outside [1, max_logit_scale], a pooling
            mode or `loss_type` is unknown, `logit_bias_init` is not finite, or
            `chunk_size` is not a positive integer.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021. Zhai et al., "Sigmoid Loss for Language Image
        Pre-Training", ICCV 2023. Gao et al., "Scaling Deep Contrastive Learning Batch
        Size under Memory Limited Setup", RepL4NLP 2021.

    Example:

    >>> image_encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    >>> text_encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     vocabulary_size=10, sequence_length=3, embedding_dim=8, num_layers=1, num_heads=2)
    >>> model = keras_transfer.models.CLIP(image_encoder, text_encoder, projection_dim=4)
    >>> out = model({"images": np.ones((2, 4, 4, 1), "float32"),
    ...              "token_ids": np.array([[1, 2, 0], [3, 4, 5]])})
    >>> {name: tuple(value.shape) for name, value in out.items()}
    {'image_embeddings': (2, 4), 'text_embeddings': (2, 4)}
    >>> round(model.get_logit_scale(), 2)  # 1 / 0.07
    14.29
    """

    keras_object_args = ("image_encoder", "text_encoder")

    def __init__(
        self,
        image_encoder,
        text_encoder,
        projection_dim=64,
        logit_scale_init=None,
        max_logit_scale=100.0,
        image_pooling="auto",
        text_pooling="auto",
        loss_type="clip",
        logit_bias_init=-10.0,
        chunk_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.loss_type = validation.check_one_of("loss_type", loss_type, ("clip", "siglip"))
        if logit_scale_init is None:
            logit_scale_init = 10.0 if self.loss_type == "siglip" else 1.0 / 0.07
        self.logit_bias_init = validation.check_finite_float("logit_bias_init", logit_bias_init, "SigLIP starts at -10")
        self.chunk_size = None if chunk_size is None else validation.check_positive_int("chunk_size", chunk_size)
        for name, value in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
            if not isinstance(value, keras.layers.Layer):
                raise ValueError(f"`{name}` must be a Keras model or layer. Received: {name}={value!r}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.projection_dim = validation.check_positive_int("projection_dim", projection_dim)
        self.logit_scale_init = validation.check_positive_float(
            "logit_scale_init",
            logit_scale_init,
            "It is the multiplier exp(s) on cosine similarities (1 / temperature), e.g. 1 / 0.07",
        )
        self.max_logit_scale = validation.check_positive_float("max_logit_scale", max_logit_scale)
        if self.max_logit_scale < 1.0:
            raise ValueError(f"`max_logit_scale` must be >= 1. Received: max_logit_scale={max_logit_scale!r}")
        if not 1.0 <= self.logit_scale_init <= self.max_logit_scale:
            raise ValueError(
                "`logit_scale_init` must lie in [1, max_logit_scale] (the scale is clamped to "
                f"[1, {self.max_logit_scale}]). Received: logit_scale_init={logit_scale_init!r}"
            )
        self.image_pooling = validation.check_one_of("image_pooling", image_pooling, ("auto", "mean", "first"))
        self.text_pooling = validation.check_one_of(
            "text_pooling", text_pooling, ("auto", "mean", "first", "argmax_token")
        )

        self.image_pooler = SequencePooling(self.image_pooling, name="image_pooling")
        self.text_pooler = SequencePooling(self.text_pooling, name="text_pooling")
        self.image_projection = keras.layers.Dense(self.projection_dim, use_bias=False, name="image_projection")
        self.text_projection = keras.layers.Dense(self.projection_dim, use_bias=False, name="text_projection")
        # The log of the multiplier. Named so that it cannot be taken for the multiplier
        # `clip_loss` wants (`self.logit_scale`); the `.keras` files keep variables by
        # position, so files saved when it was called `logit_scale` load unchanged.
        self.log_logit_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.logit_scale_init)),
            dtype="float32",
            autocast=False,
            constraint=ClampValue(0.0, math.log(self.max_logit_scale)),
            name="log_logit_scale",
        )
        self.logit_bias = None
        if self.loss_type == "siglip":
            self.logit_bias = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.logit_bias_init),
                dtype="float32",
                autocast=False,
                name="logit_bias",
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.i2t_tracker = keras.metrics.Mean(name="image_to_text_accuracy")
        self.t2i_tracker = keras.metrics.Mean(name="text_to_image_accuracy")

    # ------------------------------------------------------------ inference
    @property
    def metrics(self):
        return [self.loss_tracker, self.i2t_tracker, self.t2i_tracker]

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            missing = {"images", "token_ids"} - set(inputs)
            if missing:
                raise ValueError(
                    "`CLIP` inputs must be a dict with keys 'images' and 'token_ids' or a tuple "
                    f"(images, token_ids). Received: a dict with keys {sorted(inputs)}"
                )
            return inputs["images"], inputs["token_ids"]
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError(
            "`CLIP` inputs must be a dict with keys 'images' and 'token_ids' or a tuple "
            f"(images, token_ids). Received: {type(inputs).__name__}"
        )

    def embed_images(self, images, training=False):
        """Unit-norm float32 image embeddings of a batch (a tensor, differentiable).

        Args:
            images: a batch of the image encoder's inputs.
            training: whether the image tower runs in training mode.

        Returns:
            A float32 tensor `(batch, projection_dim)` of unit-norm rows.
        """
        features = self.image_pooler(self.image_encoder(images, training=training))
        return l2_normalize(ops.cast(self.image_projection(features), "float32"))

    def embed_text(self, token_ids, training=False):
        """Unit-norm float32 text embeddings of a batch (a tensor, differentiable).

        Args:
            token_ids: `(batch, length)` int token ids.
            training: whether the text tower runs in training mode.

        Returns:
            A float32 tensor `(batch, projection_dim)` of unit-norm rows.
        """
        features = self.text_encoder(token_ids, training=training)
        features = self.text_pooler(features, token_ids=token_ids)
        return l2_normalize(ops.cast(self.text_projection(features), "float32"))

    def call(self, inputs, training=False):
        images, token_ids = self._split_inputs(inputs)
        return {
            "image_embeddings": self.embed_images(images, training=training),
            "text_embeddings": self.embed_text(token_ids, training=training),
        }

    @property
    def logit_scale(self):
        """The multiplier `exp(log_logit_scale)` on cosine similarities (float32 tensor,
        differentiable): the `logit_scale` argument of `clip_loss`."""
        return ops.exp(self.log_logit_scale)

    def get_logit_scale(self):
        """The current multiplier `exp(log_logit_scale)` on cosine similarities.

        Returns:
            A Python float (1 / 0.07 at CLIP's initialisation).
        """
        return float(math.exp(float(ops.convert_to_numpy(self.log_logit_scale))))

    def serving_input_signature(self):
        """The input signature of `export()`.

        Returns:
            `[{"images": float32 (None, *image_shape), "token_ids": int32 (None, length)}]`.

        Raises:
            ValueError: if neither the encoders nor a previous call give the input shapes.
        """
        return clip_serving_signature(self)

    def encode_images(self, images, batch_size=256):
        """Unit-norm embeddings of a whole image array, computed in batches.

        Args:
            images: an array of images.
            batch_size: images per forward pass.

        Returns:
            A NumPy float32 array `(len(images), projection_dim)`.

        Raises:
            ValueError: if `batch_size` is not a positive integer or `images` is empty.
        """
        return self._encode(self.embed_images, images, batch_size)

    def encode_text(self, token_ids, batch_size=256):
        """Unit-norm embeddings of a whole token-id array, computed in batches.

        Args:
            token_ids: an int array `(n, length)`.
            batch_size: rows per forward pass.

        Returns:
            A NumPy float32 array `(n, projection_dim)`.

        Raises:
            ValueError: if `batch_size` is not a positive integer or `token_ids` is empty.
        """
        return self._encode(self.embed_text, token_ids, batch_size)

    def _encode(self, fn, data, batch_size):
        batch_size = validation.check_positive_int("batch_size", batch_size)
        validation.check_not_empty(data, "data")
        # Eager calls in large batches: no per-call tracing of a fresh tf.function.
        out = [
            ops.convert_to_numpy(fn(data[i : i + batch_size], training=False)) for i in range(0, len(data), batch_size)
        ]
        return np.concatenate(out, axis=0)

    # ------------------------------------------------------------- training
    def _check_data(self, x, y, batch_size, sample_weight=None):
        check_clip_data(self._split_inputs, x, y, batch_size, sample_weight)

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_data(x, y, batch_size, kwargs.get("sample_weight"))
        return super().fit(x, y, batch_size, *args, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_data(x, y, batch_size, kwargs.get("sample_weight"))
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    def _contrastive(self, image, text):
        """This replica's share of the global-batch loss, plus global metric values."""
        return contrastive_loss_and_stats(image, text, self.logit_scale, self.logit_bias)

    def _unpack(self, data):
        return unpack_clip_batch(data, self._split_inputs)

    def _report(self, stats):
        # Weights made NaN by this very step (divergence) must not log a finite value.
        finite = all_finite([v.value for v in self.trainable_variables])
        self.loss_tracker.update_state(nan_unless(finite, stats["loss"]))
        self.i2t_tracker.update_state(nan_unless(finite, stats["image_to_text_accuracy"]))
        self.t2i_tracker.update_state(nan_unless(finite, stats["text_to_image_accuracy"]))
        logs = self.get_metrics_result()
        logs["logit_scale"] = nan_unless(finite, self.logit_scale)
        if self.logit_bias is not None:
            logs["logit_bias"] = nan_unless(finite, ops.convert_to_tensor(self.logit_bias))
        return logs

    def train_step(self, data):
        images, token_ids = self._unpack(data)
        if self.chunk_size is not None:
            return self._chunked_train_step(images, token_ids)
        with tf.GradientTape() as tape:
            # Through `self(...)` so that fit alone builds the model (and `.keras` files reload).
            out = self({"images": images, "token_ids": token_ids}, training=True)
            loss, stats = self._contrastive(out["image_embeddings"], out["text_embeddings"])
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables  # after the call: lazily built towers included
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._report(stats)

    def _chunked_train_step(self, images, token_ids):
        if not self.built:
            # Lazily built towers create their variables here (at tracing), before they are listed.
            self({"images": images, "token_ids": token_ids}, training=False)
        dim = self.projection_dim

        def embed(rows):  # both embeddings side by side: the rows of a chunk stay paired
            return ops.concatenate([self.embed_images(rows[0], training=True), self.embed_text(rows[1], True)], -1)

        def loss_fn(z):
            loss, stats = self._contrastive(z[:, :dim], z[:, dim:])
            return self.optimizer.scale_loss(loss), stats

        variables = self.trainable_variables
        _, stats, grads = gradient_cache(
            embed, loss_fn, (images, token_ids), self.chunk_size, variables,
            self.image_encoder.non_trainable_variables + self.text_encoder.non_trainable_variables,
        )  # fmt: skip
        self.optimizer.apply(grads, variables)
        return self._report(stats)

    def test_step(self, data):
        images, token_ids = self._unpack(data)
        out = self({"images": images, "token_ids": token_ids}, training=False)
        _, stats = self._contrastive(out["image_embeddings"], out["text_embeddings"])
        return self._report(stats)

    # -------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "projection_dim": self.projection_dim,
                "logit_scale_init": self.logit_scale_init,
                "max_logit_scale": self.max_logit_scale,
                "image_pooling": self.image_pooling,
                "text_pooling": self.text_pooling,
                "loss_type": self.loss_type,
                "logit_bias_init": self.logit_bias_init,
                "chunk_size": self.chunk_size,
            }
        )
        return config

    # ------------------------------------------------------------ keras-hub
    @classmethod
    def from_keras_hub(cls, backbone, **kwargs):
        """A `CLIP` whose towers, projections and logit scale are those of a keras-hub `CLIPBackbone`.

        Either a `keras_hub.models.CLIPBackbone` instance (e.g. a small randomly
        initialised one, or `CLIPBackbone.from_preset("clip_vit_base_patch32")`
        when the preset is available) or a preset name. The vision tower is
        pooled at its class token and the text tower at the end-of-text token
        (the largest id), as keras-hub does, so the logits equal the backbone's.
        Needs keras-hub (`pip install keras-transfer[hub]`).

        Args:
            backbone: a `keras_hub.models.CLIPBackbone`, or the name of a preset.
            **kwargs: further `CLIP` arguments (`max_logit_scale` defaults to the larger
                of 100 and the backbone's scale).

        Returns:
            A `CLIP` whose logits equal the backbone's.

        Raises:
            ValueError: if keras-hub is not installed or `backbone` is not a `CLIPBackbone`
                or a preset name.
        """
        return clip_from_keras_hub(cls, backbone, **kwargs)
