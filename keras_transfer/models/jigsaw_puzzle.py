"""Jigsaw puzzle: the tile-permutation pretext task (Noroozi & Favaro, 2016)."""

import math

import keras
from keras import ops

from keras_transfer.models._patch_grid import PatchGridPretext
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.ops.permutations import max_hamming_permutations
from keras_transfer.utils.validation import check_int_at_least
from keras_transfer.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_transfer")
class JigsawPuzzle(PatchGridPretext):
    """Shuffles a grid of tiles by one of a fixed set of permutations and classifies which.

    From each image a `grid_size` x `grid_size` grid of `tile_size` tiles is cut, `gap`
    pixels apart, at a random offset and each tile moved by up to `jitter` pixels (so
    that edges do not give the order away). The tiles are reordered by one of
    `permutations` permutations drawn at random (position i holds tile `perm[i]`, tiles
    in reading order); each tile is encoded by the SAME encoder, the features are
    concatenated in the shuffled order, and an MLP head classifies the permutation's
    index (sparse cross-entropy in float32). The permutation set,
    `max_hamming_permutations(grid_size**2, permutations, seed)`, keeps the
    permutations far apart in Hamming distance; it is stored in `permutation_set`.

    The encoder must accept `tile_size` x `tile_size` inputs: build it on
    `keras.Input((tile_size, tile_size, channels))`, or on
    `keras.Input((None, None, channels))` to use it on whole images afterwards.
    `call(x)` (so `predict` and `export()`) returns the encoder's features of `x`.
    Randomness is stateless, a function of `(seed, optimizer.iterations)`; under
    `tf.distribute` the loss is the global-batch mean; the metrics are NaN for a step
    on non-finite images (`keras.callbacks.TerminateOnNaN` stops there).

    Args:
        encoder: a built Keras model mapping tiles (see above) to `(batch, features)`.
        tile_size: side of the square tiles, in pixels.
        grid_size: tiles per side (2 to 4).
        permutations: size of the permutation set, at most `(grid_size**2)!`.
        gap: pixels between neighbouring tiles.
        jitter: each tile moves by up to this many pixels in each direction.
        head_hidden_dim: width of the head's hidden layer.
        seed: int seed of the permutation set and the random draws (None draws one,
            kept in the config).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model taking `tile_size` tiles, or an
            argument is out of range; in `fit`, if the grid does not fit the images.

    Reference:
        Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving
        Jigsaw Puzzles", ECCV 2016.

    Example:

    >>> encoder = keras.Sequential([
    ...     keras.Input((None, None, 1)), keras.layers.Conv2D(3, 2),
    ...     keras.layers.GlobalAveragePooling2D()])
    >>> model = keras_transfer.models.JigsawPuzzle(
    ...     encoder, tile_size=4, grid_size=2, permutations=6, gap=0, seed=0)
    >>> tiles, labels = model.shuffle_tiles(np.zeros((2, 8, 8, 1), "float32"))
    >>> tuple(tiles.shape), tuple(labels.shape), model.permutation_set.shape
    ((2, 4, 4, 4, 1), (2,), (6, 4))
    """

    head_name = "permutation_head"
    accuracy_name = "permutation_accuracy"

    def __init__(
        self,
        encoder,
        tile_size,
        grid_size=3,
        permutations=100,
        gap=1,
        jitter=0,
        head_hidden_dim=64,
        seed=None,
        **kwargs,
    ):
        grid_size = check_int_at_least("grid_size", grid_size, 2)
        if grid_size > 4:
            raise ValueError(f"`grid_size` must be 2, 3 or 4. Received: grid_size={grid_size}")
        permutations = check_positive_int("permutations", permutations)
        tiles = grid_size**2
        if tiles <= 9 and permutations > math.factorial(tiles):
            raise ValueError(
                f"`permutations` must be at most {math.factorial(tiles)}, the number of orders of the "
                f"{tiles} tiles of a {grid_size}x{grid_size} grid. Received: permutations={permutations}. "
                f"Use permutations <= {math.factorial(tiles)} or a larger grid_size."
            )
        seed = resolve_seed(seed)
        super().__init__(
            encoder,
            tile_size,
            grid_size=grid_size,
            num_classes=permutations,
            head_patches=tiles,
            gap=gap,
            jitter=jitter,
            head_hidden_dim=head_hidden_dim,
            seed=seed,
            **kwargs,
        )
        self.permutations = permutations
        self.permutation_set = max_hamming_permutations(tiles, permutations, seed)

    @property
    def tile_size(self):
        return self.patch_size

    def _sample_patches(self, x, seed):
        """`(tiles, labels)`: shuffled tiles `(B, grid_size**2, p, p, C)`, int32 labels `(B,)`."""
        labels = self.draw_integers(x, 1, self.permutations, seed, 4)[:, 0]
        order = ops.take(ops.convert_to_tensor(self.permutation_set, "int32"), labels, axis=0)
        rows, cols = self.patch_corners(x, seed)
        rows = ops.take_along_axis(rows, order, axis=1)
        cols = ops.take_along_axis(cols, order, axis=1)
        return self.crop(x, rows, cols), labels

    def shuffle_tiles(self, images, seed=None):
        """The tiles of each image in the order of a random permutation of the set.

        Args:
            images: `(B, height, width, channels)` images.
            seed: stateless seed pair; None takes the training draw of the current step.

        Returns:
            `(tiles, labels)`: `(B, grid_size**2, tile_size, tile_size, channels)` with
            `tiles[b, i]` = tile `permutation_set[labels[b], i]` (reading order), and int32
            labels `(B,)`.

        Raises:
            ValueError: if the grid does not fit the images.
        """
        images = ops.convert_to_tensor(images)
        self.check_fits(images.shape)
        return self._sample_patches(images, self.draw_seed() if seed is None else seed)

    def _logits_and_labels(self, x, seed, training):
        tiles, labels = self._sample_patches(x, seed)
        return self.head(self.encode_patches(tiles, training), training=training), labels

    def get_config(self):
        config = super().get_config()
        config["tile_size"] = config.pop("patch_size")
        config.update({"grid_size": self.grid_size, "permutations": self.permutations})
        return config
