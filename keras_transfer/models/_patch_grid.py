"""Private base of the patch-grid pretext models (relative patch position, jigsaw puzzle)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import check_input_rank
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.models._self_supervised import step_seed
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_non_negative_int
from keras_transfer.utils.validation import check_positive_int


def mlp_head(input_dim, hidden_dim, classes, name):
    """Dense(hidden_dim, relu) -> Dense(classes) logits in float32, built on `input_dim` features."""
    head = keras.Sequential(
        [
            keras.layers.Dense(hidden_dim, activation="relu", name="hidden"),
            keras.layers.Dense(classes, dtype="float32", name="logits"),
        ],
        name=name,
    )
    head.build((None, input_dim))
    return head


class PatchGridPretext(SelfSupervisedModel):
    """Cuts a `grid_size` x `grid_size` grid of `patch_size` patches from each image,
    `gap` pixels apart, the grid placed at a random offset and each patch moved by up to
    `jitter` pixels; encodes patches with the shared encoder; a head classifies a label.

    Randomness is stateless, a function of `(seed, optimizer.iterations)` (evaluation on
    a stream of its own), drawn for the GLOBAL batch under `tf.distribute`.
    Subclasses pass the grid size, the number of classes and of patches the head sees,
    and define `head_name`, `accuracy_name` and `_logits_and_labels(x, seed, training)`.
    """

    head_name = "head"
    accuracy_name = "accuracy"

    def __init__(
        self, encoder, patch_size, grid_size, num_classes, head_patches, gap, jitter, head_hidden_dim, seed, **kwargs
    ):
        super().__init__(**kwargs)
        self.grid_size = grid_size
        self.num_classes = num_classes
        self.seed = resolve_seed(seed)
        owner = type(self).__name__
        feature_dim = check_encoder(encoder, owner)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.gap = check_non_negative_int("gap", gap)
        self.jitter = check_non_negative_int("jitter", jitter)
        self.head_hidden_dim = check_positive_int("head_hidden_dim", head_hidden_dim)
        shape = tuple(encoder.inputs[0].shape)
        if len(shape) != 4 or any(d not in (None, self.patch_size) for d in shape[1:3]):
            raise ValueError(
                f"`patch_size` must match the encoder's input: {owner} encodes patch_size x patch_size "
                f"patches. Received: patch_size={self.patch_size} and encoder input shape {shape}. Build the "
                f"encoder on keras.Input(({self.patch_size}, {self.patch_size}, channels)) or on "
                "keras.Input((None, None, channels)) to use it on whole images afterwards."
            )
        self.encoder = encoder
        self.feature_dim = feature_dim
        self.head = mlp_head(head_patches * feature_dim, self.head_hidden_dim, self.num_classes, self.head_name)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name=self.accuracy_name)
        self.build(shape)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    @property
    def grid_extent(self):
        """Pixels the grid needs along each axis (jitter room included)."""
        return self.grid_size * self.patch_size + (self.grid_size - 1) * self.gap + 2 * self.jitter

    def check_fits(self, shape):
        """Raises if the grid does not fit images of static `shape` (batch, height, width, channels)."""
        extent = self.grid_extent
        sizes = [d for d in tuple(shape)[1:3] if d is not None]
        if any(d < extent for d in sizes):
            raise ValueError(
                f"`patch_size`, `gap` and `jitter` must fit a {self.grid_size}x{self.grid_size} grid in the images: "
                f"{self.grid_size} * patch_size + {self.grid_size - 1} * gap + 2 * jitter = {extent} pixels. "
                f"Received: patch_size={self.patch_size}, gap={self.gap}, jitter={self.jitter} for images of "
                f"shape {tuple(shape)}. Use a smaller patch_size, gap or jitter, or larger images."
            )

    def draw_seed(self, training=True):
        """The stateless seed of the current step: `(seed, optimizer.iterations)`, evaluation on its own stream."""
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
        return tf.random.experimental.stateless_fold_in(step_seed(self.seed, step), 0 if training else 1)

    def draw_integers(self, x, columns, maxval, seed, stream):
        """int32 `(rows of x, columns)` uniform in [0, maxval), drawn for the global batch and
        sliced at this replica's rows (R replicas draw what one device draws)."""
        seed = tf.random.experimental.stateless_fold_in(seed, stream)
        shape = tf.stack([distributed.global_batch_size(x), columns])
        values = tf.random.stateless_uniform(shape, seed, minval=0, maxval=maxval, dtype="int32")
        offset = distributed.replica_offset(x)
        return values[offset : offset + tf.shape(x)[0]]

    def patch_corners(self, x, seed):
        """Top-left `(rows, cols)` of every grid cell: two int32 `(B, grid_size**2)` tensors
        (cells in reading order), random grid offset plus per-patch jitter."""
        cells = self.grid_size**2
        step = self.patch_size + self.gap
        base = ops.arange(self.grid_size, dtype="int32") * step + self.jitter
        corners = []
        for axis, stream in ((1, 0), (2, 1)):
            room = tf.shape(x)[axis] - self.grid_extent + 1
            offset = self.draw_integers(x, 1, room, seed, stream)
            jitter = self.draw_integers(x, cells, 2 * self.jitter + 1, seed, stream + 2) - self.jitter
            grid = ops.repeat(base, self.grid_size) if axis == 1 else ops.tile(base, self.grid_size)
            corners.append(offset + grid[None, :] + jitter)
        return corners

    def crop(self, x, rows, cols):
        """Patches `(B, K, patch, patch, C)` with top-left corners `rows`, `cols` `(B, K)`."""
        span = ops.arange(self.patch_size, dtype="int32")
        row_index = rows[:, :, None] + span  # (B, K, p)
        col_index = cols[:, :, None] + span
        strips = tf.gather(x, row_index, axis=1, batch_dims=1)  # (B, K, p, W, C)
        return tf.gather(strips, col_index, axis=3, batch_dims=2)  # (B, K, p, p, C)

    def encode_patches(self, patches, training):
        """Shared-encoder features `(B, K * features)` of patches `(B, K, p, p, C)`, in their order."""
        shape = tf.shape(patches)
        flat = tf.reshape(patches, tf.concat([[-1], shape[2:]], axis=0))
        features = self.encoder(flat, training=training)
        return tf.reshape(features, [shape[0], shape[1] * self.feature_dim])

    def step_loss(self, x, training):
        if isinstance(x, (tuple, list, dict)):
            raise ValueError(
                f"{type(self).__name__} trains on one batch of images `x` (labels are made from the patches). "
                f"Received: a {type(x).__name__} of {len(x)} tensors"
            )
        check_input_rank(x, self.encoder)
        self.check_fits(x.shape)
        logits, labels = self._logits_and_labels(x, self.draw_seed(training), training)
        logits = ops.cast(logits, "float32")
        losses = ops.logsumexp(logits, axis=1) - ops.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=1), "int32"), labels), "float32")
        count = ops.shape(labels)[0]
        loss = distributed.global_mean(float32_sum(losses), count)
        accuracy = distributed.global_mean(float32_sum(hits), count)
        shares = {"loss": loss, self.accuracy_name: accuracy}
        return self.with_regularization(loss), shares, count, all_finite([x])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "gap": self.gap,
                "jitter": self.jitter,
                "head_hidden_dim": self.head_hidden_dim,
                "seed": self.seed,
            }
        )
        return config
