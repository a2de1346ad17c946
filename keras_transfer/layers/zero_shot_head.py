"""The zero-shot classification head of CLIP: cosine similarity to class text embeddings.

`probabilities = softmax(logit_scale * normalize(image_embedding) @ C^T)`,
where row k of `C` is the (prompt-ensembled, unit-norm) text embedding of
class k. `C` is a trainable weight: fine-tuning the zero-shot classifier
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
    `(batch, num_classes)`: `softmax(logit_scale * normalize(x) @ C^T)`, where row
    k of the trainable weight `C` is the unit-norm text embedding of class k.
    Computed in float32 under any dtype policy.

    Args:
        num_classes: number of classes.
        embedding_dim: size of the image / text embeddings.
        logit_scale: positive multiplier on cosine similarities (CLIP's
            `exp(log_scale)`).
        class_names: optional list of `num_classes` names kept in the config
            (for readers of the model).
        class_embeddings: optional `(num_classes, embedding_dim)` initial value
            of `C` (rows should be unit-norm); default Glorot-uniform.
        output: "probabilities" (softmax) or "logits".
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if a size is not positive, `logit_scale` is not positive,
            `output` is unknown, or `class_names` / `class_embeddings` do not
            match `num_classes` and `embedding_dim`.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural
        Language Supervision", ICML 2021.

    Example:

    >>> head = keras_transfer.layers.ZeroShotHead(
    ...     num_classes=2, embedding_dim=3, logit_scale=10.0,
    ...     class_embeddings=np.eye(2, 3), output="logits")
    >>> head(np.array([[2.0, 0.0, 0.0]], "float32")).numpy()
    array([[10.,  0.]], dtype=float32)
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        logit_scale=100.0,
        class_names=None,
        class_embeddings=None,
        output="probabilities",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = validation.check_positive_int("num_classes", num_classes)
        self.embedding_dim = validation.check_positive_int("embedding_dim", embedding_dim)
        self.logit_scale = validation.check_positive_float("logit_scale", logit_scale)
        self.output_mode = validation.check_one_of("output", output, ("probabilities", "logits"))
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
        logits = self.logit_scale * ops.matmul(image, ops.transpose(classes))
        return ops.softmax(logits, axis=-1) if self.output_mode == "probabilities" else logits

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
            }
        )
        return config
