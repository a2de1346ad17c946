"""Relative patch position: the context-prediction pretext task (Doersch et al., 2015)."""

import keras
from keras import ops

from keras_transfer.models._patch_grid import PatchGridPretext

# The 8 neighbours of the centre cell (index 4) of a 3x3 grid, in reading order: label k -> cell.
NEIGHBOUR_CELLS = (0, 1, 2, 3, 5, 6, 7, 8)


@keras.saving.register_keras_serializable(package="keras_transfer")
class RelativePatchPosition(PatchGridPretext):
    """Predicts where a patch lies relative to the centre patch of a 3x3 grid.

    From each image a 3x3 grid of `patch_size` x `patch_size` patches is cut, `gap`
    pixels apart, the grid placed at a random offset and each patch moved by up to
    `jitter` pixels (gap and jitter keep the task from being solved by matching
    boundary pixels). The centre patch and one of its 8 neighbours, chosen at random,
    are encoded by the SAME encoder; their features, concatenated, go to an MLP head
    that classifies the neighbour's position (label k: cell `NEIGHBOUR_CELLS[k]` of the
    grid in reading order, 0 = top-left, 7 = bottom-right), trained with sparse
    cross-entropy in float32.

    The encoder must accept `patch_size` x `patch_size` inputs: build it on
    `keras.Input((patch_size, patch_size, channels))`, or on
    `keras.Input((None, None, channels))` (convolutions and global pooling) to use it on
    whole images afterwards. `call(x)` (so `predict` and `export()`) returns the
    encoder's features of `x`, in the encoder's declared input shape. `fit` takes whole
    images, at least `3 * patch_size + 2 * gap + 2 * jitter` pixels on each side.

    Randomness (positions, grid offset, jitter) is stateless, a function of
    `(seed, optimizer.iterations)`, so a reloaded or resumed model draws what the
    uninterrupted run would; `evaluate` draws from a stream of its own. Under
    `tf.distribute` the draws are made for the global batch and the loss is the
    global-batch mean. The metrics are NaN for a step on non-finite images or one that
    leaves a weight non-finite (`keras.callbacks.TerminateOnNaN` stops there).

    Args:
        encoder: a built Keras model mapping patches (see above) to `(batch, features)`.
        patch_size: side of the square patches, in pixels.
        gap: pixels between neighbouring patches.
        jitter: each patch moves by up to this many pixels in each direction.
        head_hidden_dim: width of the head's hidden layer.
        seed: int seed of the random draws (None draws one, kept in the config).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model taking `patch_size` patches, or an
            argument is out of range; in `fit`, if the grid does not fit the images.

    Reference:
        Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context
        Prediction", ICCV 2015.

    Example:

    >>> encoder = keras.Sequential([
    ...     keras.Input((None, None, 1)), keras.layers.Conv2D(3, 2),
    ...     keras.layers.GlobalAveragePooling2D()])
    >>> model = keras_transfer.models.RelativePatchPosition(encoder, patch_size=4, gap=1, seed=0)
    >>> centre, neighbour, labels = model.sample_pairs(np.zeros((2, 16, 16, 1), "float32"))
    >>> tuple(centre.shape), tuple(neighbour.shape), tuple(labels.shape)
    ((2, 4, 4, 1), (2, 4, 4, 1), (2,))
    >>> tuple(model(np.zeros((2, 16, 16, 1))).shape)  # the encoder's features
    (2, 3)
    """

    head_name = "position_head"
    accuracy_name = "position_accuracy"

    def __init__(self, encoder, patch_size, gap=1, jitter=0, head_hidden_dim=64, seed=None, **kwargs):
        super().__init__(
            encoder,
            patch_size,
            grid_size=3,
            num_classes=8,
            head_patches=2,
            gap=gap,
            jitter=jitter,
            head_hidden_dim=head_hidden_dim,
            seed=seed,
            **kwargs,
        )

    def _sample_patches(self, x, seed):
        """`(patches, labels)`: `(B, 2, p, p, C)` centre then neighbour patches, int32 labels `(B,)`."""
        labels = self.draw_integers(x, 1, 8, seed, 4)[:, 0]
        rows, cols = self.patch_corners(x, seed)
        cells = ops.stack([ops.full_like(labels, 4), ops.take(ops.array(NEIGHBOUR_CELLS, "int32"), labels)], axis=1)
        rows = ops.take_along_axis(rows, cells, axis=1)
        cols = ops.take_along_axis(cols, cells, axis=1)
        return self.crop(x, rows, cols), labels

    def sample_pairs(self, images, seed=None):
        """The centre patch and a random neighbour of each image, with the position labels.

        Args:
            images: `(B, height, width, channels)` images.
            seed: stateless seed pair; None takes the training draw of the current step.

        Returns:
            `(centre, neighbour, labels)`: two `(B, patch_size, patch_size, channels)` batches
            and int32 labels `(B,)` (the neighbour's cell is `NEIGHBOUR_CELLS[label]`).

        Raises:
            ValueError: if the grid does not fit the images.
        """
        images = ops.convert_to_tensor(images)
        self.check_fits(images.shape)
        patches, labels = self._sample_patches(images, self.draw_seed() if seed is None else seed)
        return patches[:, 0], patches[:, 1], labels

    def _logits_and_labels(self, x, seed, training):
        patches, labels = self._sample_patches(x, seed)
        return self.head(self.encode_patches(patches, training), training=training), labels
