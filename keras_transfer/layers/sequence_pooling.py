"""Pools an encoder output to one vector per example, for CLIP's two towers.

Keras has GlobalAveragePooling1D/2D but no "first token" (ViT class token) or
"token at the largest id" (CLIP's end-of-text token) pooling; keras-hub keeps
its CLIP poolers private. This layer covers the four cases in one place.
"""

import keras
from keras import ops

from keras_transfer.utils import validation

MODES = ("auto", "mean", "first", "argmax_token")


@keras.saving.register_keras_serializable(package="keras_transfer")
class SequencePooling(keras.layers.Layer):
    """Pools `(batch, ..., dim)` features to one `(batch, dim)` vector per example.

    The pooling of CLIP's two towers: the mean over the middle axes (images,
    token sequences), the first position (a ViT class token) or the position of
    the largest token id (CLIP's end-of-text token).

    Args:
        mode: "auto" (rank 2 passes through, higher ranks are averaged over the
            middle axes), "mean" (average over the middle axes), "first" (the
            first position of a `(batch, length, dim)` sequence: a class token),
            or "argmax_token" (the position of the largest token id, CLIP's
            end-of-text token; call with `token_ids`).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        features: a `(batch, ..., dim)` tensor; `(batch, length, dim)` for
            "first" and "argmax_token".
        token_ids: `(batch, length)` token ids, needed by "argmax_token" only.

    Raises:
        ValueError: if `mode` is unknown; when called, if "first" or
            "argmax_token" gets an input that is not of rank 3, or
            "argmax_token" gets no `token_ids`.

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural
        Language Supervision", ICML 2021 (end-of-text token); Dosovitskiy et
        al., "An Image is Worth 16x16 Words", ICLR 2021 (class token).

    Example:

    >>> features = np.arange(12, dtype="float32").reshape((1, 3, 4))
    >>> keras_transfer.layers.SequencePooling("mean")(features).numpy()
    array([[4., 5., 6., 7.]], dtype=float32)
    >>> keras_transfer.layers.SequencePooling("first")(features).numpy()
    array([[0., 1., 2., 3.]], dtype=float32)
    >>> pool = keras_transfer.layers.SequencePooling("argmax_token")
    >>> pool(features, token_ids=np.array([[5, 9, 0]])).numpy()
    array([[4., 5., 6., 7.]], dtype=float32)
    """

    def __init__(self, mode="auto", **kwargs):
        super().__init__(**kwargs)
        self.mode = validation.check_one_of("mode", mode, MODES)

    def call(self, features, token_ids=None):
        rank = len(features.shape)
        if self.mode in ("auto", "mean"):
            if rank == 2:
                return features
            return ops.mean(features, axis=tuple(range(1, rank - 1)))
        if rank != 3:
            raise ValueError(
                f"`SequencePooling(mode='{self.mode}')` needs a (batch, length, dim) input. "
                f"Received: shape {tuple(features.shape)}. Use mode='mean' or 'auto'."
            )
        if self.mode == "first":
            return features[:, 0, :]
        if token_ids is None:
            raise ValueError(
                "`token_ids` must be passed to `SequencePooling(mode='argmax_token')`. Received: token_ids=None."
            )
        index = ops.argmax(token_ids, axis=-1)[:, None, None]
        return ops.squeeze(ops.take_along_axis(features, ops.cast(index, "int32"), axis=1), axis=1)

    def compute_output_shape(self, features_shape, token_ids_shape=None):
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
