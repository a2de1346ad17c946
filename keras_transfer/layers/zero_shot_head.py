"""The zero-shot classification head of CLIP: cosine similarity to class text embeddings.

`logits = logit_scale * normalize(image_embedding) @ C^T + logit_bias`, where
row k of `C` is the (prompt-ensembled, unit-norm) text embedding of class k;
`probabilities = softmax(logits)` (CLIP), or `sigmoid(logits)` (SigLIP: one
independent probability per class). `C` is a trainable weight: fine-tuning the zero-shot classifier
starts from the zero-shot head (as WiSE-FT does); freeze the layer to keep it.
Computed in float32 under any dtype policy.
"""

import keras
import numpy as np
from keras import ops

from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.ops.numerics import l2_normalize
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class ZeroShotHead(keras.layers.Layer):
    """CLIP's zero-shot classifier: cosine similarity to class text embeddings.

    Image embeddings `(batch, embedding_dim)` -> class probabilities (or logits)
    `(batch, num_classes)`: `activation(logit_scale * normalize(x) @ C^T + logit_bias)`,
    where row k of the trainable weight `C` is the unit-norm text embedding of class k.
    With `activation="softmax"` (CLIP) the probabilities sum to one over the classes;
    with `"sigmoid"` (a SigLIP-trained model, whose loss makes every image-text pair
    an independent binary decision) each class gets its own probability
    `sigmoid(t * cos + b)` with the model's learned temperature `t` and bias `b`,
    and they need not sum to one. Computed in float32 under any dtype policy.

    Args:
        num_classes: number of classes.
        embedding_dim: size of the image / text embeddings.
        logit_scale: positive multiplier on cosine similarities (CLIP's
            `exp(log_scale)`).
        class_names: optional list of `num_classes` names kept in the config
            (for readers of the model).
        class_embeddings: optional `(num_classes, embedding_dim)` initial value
            of `C` (rows should be unit-norm); default Glorot-uniform.
        output: "probabilities" (after `activation`) or "logits".
        activation: "softmax" (CLIP's zero-shot classifier) or "sigmoid" (SigLIP's
            per-class probabilities).
        logit_bias: a finite number added to the logits (SigLIP's learned bias `b`;
            no effect on softmax probabilities).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if a size is not positive, `logit_scale` is not positive,
            `logit_bias` is not finite, `output` or `activation` is unknown, or
            `class_names` / `class_embeddings` do not match `num_classes` and
            `embedding_dim`.

    Call arguments:
        image_embeddings: `(batch, embedding_dim)` image embeddings (any norm).

    Returns:
        `(batch, num_classes)` float32 probabilities or logits.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural
        Language Supervision", ICML 2021; Zhai, Mustafa, Kolesnikov & Beyer,
        "Sigmoid Loss for Language Image Pre-Training", ICCV 2023 (sigmoid).

    Example:

    >>> head = keras_transfer.layers.ZeroShotHead(
    ...     num_classes=2, embedding_dim=3, logit_scale=10.0,
    ...     class_embeddings=np.eye(2, 3), output="logits")
    >>> head(np.array([[2.0, 0.0, 0.0]], "float32")).numpy()
    array([[10.,  0.]], dtype=float32)
    >>> siglip = keras_transfer.layers.ZeroShotHead(
    ...     num_classes=2, embedding_dim=3, logit_scale=10.0, logit_bias=-5.0,
    ...     class_embeddings=np.eye(2, 3), activation="sigmoid")
    >>> siglip(np.array([[2.0, 0.0, 0.0]], "float32")).numpy().round(4)  # sigmoid(5), sigmoid(-5)
    array([[0.9933, 0.0067]], dtype=float32)
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        logit_scale=100.0,
        class_names=None,
        class_embeddings=None,
        output="probabilities",
        activation="softmax",
        logit_bias=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = validation.check_positive_int("num_classes", num_classes)
        self.embedding_dim = validation.check_positive_int("embedding_dim", embedding_dim)
        self.logit_scale = validation.check_positive_float("logit_scale", logit_scale)
        self.output_mode = validation.check_one_of("output", output, ("probabilities", "logits"))
        self.activation = validation.check_one_of(
            "activation", activation, ("softmax", "sigmoid"), "Use 'sigmoid' for a SigLIP-trained CLIP"
        )
        self.logit_bias = validation.check_finite_float("logit_bias", logit_bias, "SigLIP's is `clip.logit_bias`")
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"`class_names` must hold num_classes={self.num_classes} names. Received: "
                f"{len(self.class_names)} names."
            )
        initial = None
        if class_embeddings is not None:
            initial = np.asarray(class_embeddings, dtype="float32")
            if initial.shape != (self.num_classes, self.embedding_dim):
                raise ValueError(
                    "`class_embeddings` must have shape (num_classes, embedding_dim) = "
                    f"{(self.num_classes, self.embedding_dim)}. Received: shape {initial.shape}"
                )
        self._initial = initial

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"`ZeroShotHead` expects embeddings of size embedding_dim={self.embedding_dim}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        initial = self._initial
        self.class_embeddings = self.add_weight(
            shape=(self.num_classes, self.embedding_dim),
            initializer=(lambda shape, dtype=None: initial) if initial is not None else "glorot_uniform",
            dtype="float32",
            autocast=False,
            name="class_embeddings",
        )
        self.built = True

    def call(self, image_embeddings):
        dtype = compute_dtype(image_embeddings)  # float32, or float64 for float64 inputs
        image = l2_normalize(ops.cast(image_embeddings, dtype))
        classes = ops.cast(self.class_embeddings, dtype)
        logits = self.logit_scale * ops.matmul(image, ops.transpose(classes)) + self.logit_bias
        if self.output_mode == "logits":
            return logits
        return ops.sigmoid(logits) if self.activation == "sigmoid" else ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, image_embeddings):
        return keras.KerasTensor((image_embeddings.shape[0], self.num_classes), dtype=compute_dtype(image_embeddings))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim,
                "logit_scale": self.logit_scale,
                "class_names": self.class_names,
                "output": self.output_mode,
                "activation": self.activation,
                "logit_bias": self.logit_bias,
            }
        )
        return config
