"""MoCo: momentum contrast with a queue of negative keys (He et al., 2020; v2 MLP head)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.losses.info_nce import info_nce_terms
from keras_transfer.models._contrastive_utils import ContrastivePretext
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._momentum import ema_update
from keras_transfer.models._momentum import frozen_clone
from keras_transfer.models._momentum import momentum_pairs
from keras_transfer.models._self_supervised import encoder_output_shape
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.models._self_supervised import resolve_seed
from keras_transfer.models._self_supervised import step_seed
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_transfer")
class MoCo(ContrastivePretext):
    """Momentum contrast: a query encoder trained by InfoNCE against a momentum key encoder.

    For each pair of views, the query `q = g(f(view_1))` must pick its key
    `k = g_k(f_k(view_2))` out of `1 + queue_size` candidates: the key and the
    `queue_size` most recent keys of earlier batches (the memory bank). The loss is
    `keras_transfer.losses.info_nce` of the normalised query against its key and
    the queue. The key
    encoder `(f_k, g_k)` is a copy of `(f, g)` made in `__init__` that receives no
    gradient. At the start of each training step its parameters follow the query's
    trainable parameters by an exponential moving average,
    `theta_k <- momentum * theta_k + (1 - momentum) * theta`. Variables that are not
    trainable in the query (BatchNorm moving statistics, frozen layers) are not
    averaged: as in the official MoCo code, where BatchNorm buffers are not
    parameters, the key encoder's moving statistics come from its own forward passes.

    Keys are computed in training mode (batch statistics), as in the official code.
    Shuffle-BN stand-in on one device: the batch of `view_2` is permuted at random,
    split into `bn_splits` chunks (sizes differ by at most one), each chunk goes
    through the key encoder on its own (its own BatchNorm statistics, and one update
    of the key encoder's moving statistics per chunk), and the keys are put back in
    the original order. A query and its key then do not share one set of batch
    statistics, which would let them "cheat" against queue negatives from older
    batches (He et al., 2020, §3.3; the official CIFAR demo uses 8 splits of a batch
    of 512). Only the key branch is split here; the query encoder sees the whole batch
    (the official SplitBatchNorm demo also splits the query batch, unshuffled).
    A batch smaller than `bn_splits` is an error (a chunk needs examples for its
    statistics): batch the data with `drop_remainder=True` or lower `bn_splits`.

    `evaluate` (`test_step`) is deterministic and changes nothing: queries and keys
    run in inference mode (each encoder's moving statistics, no permutation), the
    queue, its pointer and the key encoder are left as they are.

    The queue, its write pointer and the key encoder are model weights, so a
    `.keras` file saved mid-training resumes exactly. Data: pairs of views as
    for `SimCLR` (`simclr_dataset`), or one batch plus `augmenter=`. The (global)
    batch must not exceed `queue_size`.

    `tf.distribute` (e.g. `MirroredStrategy`): a training step equals the one-device
    step on the same global batch. Every replica gathers the `view_2` batches of all
    replicas and computes the keys of the GLOBAL batch exactly as one device does (the
    same permutation and `bn_splits` chunks), takes its own rows as positives, scores
    its queries against the one shared queue, and the loss is the global-batch mean.
    The momentum update and the enqueued keys (all the global batch's, in order) are
    then the same on every replica and are written once in cross-replica context, so
    the mirrored queue, pointer and key encoder (moving statistics included) stay
    identical to one device. Cost: the key encoder's forward pass (no gradient) runs
    over the global batch on every replica, R times the one-device work for R replicas;
    this is the price of exact `bn_splits` semantics (the official code instead
    shuffles the keys across GPUs and uses each GPU's own BatchNorm statistics, which
    equals `bn_splits = number of GPUs`). BatchNorm layers in the QUERY encoder use
    per-replica batch statistics, as in any Keras model under `tf.distribute`, so
    equality with one device holds for query encoders without batch-dependent layers.

    `call(x)` returns the query encoder's representation `f(x)`. The metrics (`loss`,
    `contrastive_accuracy`) are NaN for a step whose views hold NaN or infinite values
    or that leaves a weight non-finite, so `keras.callbacks.TerminateOnNaN` stops there.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`. Set its
            weights (e.g. pretrained ones) before building MoCo: the key encoder is
            copied here, and frozen query layers are not averaged into it afterwards.
        projection_head: Keras model or None for the MLP `Dense(hidden, relu) ->
            Dense(projection_dim)` (MoCo v2).
        projection_dim: output size of the default head.
        projection_hidden_dim: hidden size of the default head (default: the encoder's
            feature size).
        queue_size: number of negative keys kept (65536 in the paper; >= batch).
        momentum: EMA coefficient of the key encoder, in [0, 1) (0.999 in the paper).
        temperature: InfoNCE temperature (0.2 in MoCo v2).
        bn_splits: number of chunks the permuted key batch is split into for
            BatchNorm (positive int, <= batch size). Default 2: the smallest value at
            which a key's batch statistics come from a random half of the batch
            rather than from exactly the images its query was normalised with; it
            costs one extra encoder call per step and keeps chunks large at the
            batch sizes contrastive learning uses. 1 is plain training-mode BatchNorm
            (no permutation). Without BatchNorm (or other batch-dependent layers) in
            the key encoder the value changes nothing but the cost. On the digits
            benchmark (batch 256, BENCHMARKS.md) 1 and 2 gave the same linear-probe
            accuracy within noise.
        augmenter: optional view-making layer for one-batch inputs.
        seed: non-negative int seeding the key-batch permutation, which is a function
            of (seed, optimizer step) so that a reloaded model resumes it exactly (None:
            drawn from Python's `random`, which `keras.utils.set_random_seed` seeds, and
            stored in the config).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the query encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the projection head is not a
            Keras layer, a size, `temperature` or `seed` is invalid, or `momentum` lies
            outside [0, 1).

    Reference:
        He, Fan, Wu, Xie & Girshick, "Momentum Contrast for Unsupervised Visual
        Representation Learning", CVPR 2020; Chen, Fan, Girshick & He, "Improved
        Baselines with Momentum Contrastive Learning", 2020 (MoCo v2).

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.MoCo(encoder, projection_dim=4, queue_size=8, bn_splits=1)
    >>> model.compile(optimizer="adam")
    >>> view_1, view_2 = np.random.default_rng(0).normal(size=(2, 4, 4)).astype("float32")
    >>> history = model.fit((view_1, view_2), batch_size=4, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['contrastive_accuracy', 'loss']
    >>> int(model.queue_pointer.numpy())  # the batch's 4 keys are now in the queue
    4
    >>> tuple(model(np.ones((2, 4))).shape)  # the query encoder's representation f(x)
    (2, 8)
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        projection_dim=128,
        projection_hidden_dim=None,
        queue_size=4096,
        momentum=0.999,
        temperature=0.2,
        bn_splits=2,
        augmenter=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            encoder, projection_head, projection_dim, projection_hidden_dim, temperature, augmenter, **kwargs
        )
        self.queue_size = check_positive_int("queue_size", queue_size)
        self.momentum = check_fraction("momentum", momentum)
        self.bn_splits = check_positive_int("bn_splits", bn_splits)
        # The permutation is a stateless function of (seed, optimizer step): a reloaded
        # model continues the same stream. A drawn seed is kept in the config for that.
        self.seed = resolve_seed(seed)
        key_dim = int(self.projection_head.compute_output_shape(encoder_output_shape(encoder))[-1])
        self.key_encoder = frozen_clone(encoder)
        self.key_projection_head = frozen_clone(self.projection_head)
        initial = keras.random.normal((self.queue_size, key_dim), seed=0)
        initial = initial / ops.norm(initial, axis=1, keepdims=True)
        self.queue = self.add_weight(
            shape=(self.queue_size, key_dim),
            initializer=lambda shape, dtype: ops.cast(initial, dtype),
            trainable=False,
            dtype="float32",
            name="queue",
        )
        self.queue_pointer = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="int32", name="queue_pointer"
        )
        self.build(tuple(encoder.inputs[0].shape))

    def _check_batch(self, view, training):
        """Checks the batch of keys (the global batch in training) against the queue."""
        static = view.shape[0] if view.shape.rank is not None else None
        fix = "Lower the batch size or raise `queue_size`."
        split_fix = (
            "Lower `bn_splits` or batch the data with `drop_remainder=True` so that no "
            "batch is smaller than `bn_splits`."
        )
        check_splits = training and self.bn_splits > 1
        if static is not None:
            if static > self.queue_size:
                raise ValueError(
                    f"`queue_size` must be >= the batch size. Received: queue_size={self.queue_size} "
                    f"for a batch of {static}. {fix}"
                )
            if check_splits and static < self.bn_splits:
                raise ValueError(
                    f"`bn_splits` must be <= the batch size (each chunk of keys needs its own "
                    f"BatchNorm statistics). Received: bn_splits={self.bn_splits} for a batch of "
                    f"{static}. {split_fix}"
                )
            return []
        checks = [
            tf.debugging.assert_less_equal(
                tf.shape(view)[0],
                self.queue_size,
                message=f"`queue_size` must be >= the batch size (queue_size={self.queue_size}). {fix}",
            )
        ]
        if check_splits:
            checks.append(
                tf.debugging.assert_greater_equal(
                    tf.shape(view)[0],
                    self.bn_splits,
                    message=f"`bn_splits` must be <= the batch size (bn_splits={self.bn_splits}). {split_fix}",
                )
            )
        return checks

    def _key_branch(self, view, training):
        return self.key_projection_head(self.key_encoder(view, training=training), training=training)

    def _key_permutation(self, batch_size, step):
        """The random permutation of `range(batch_size)` used at optimizer step `step`."""
        return tf.random.experimental.stateless_shuffle(
            tf.range(batch_size, dtype="int32"), seed=step_seed(self.seed, step)
        )

    def _split_keys(self, view, permutation):
        """Keys of `view` in training mode, BatchNorm statistics per chunk of `view[permutation]`.

        The permuted batch is cut into `bn_splits` consecutive chunks whose sizes differ by
        at most one (the first `batch % bn_splits` chunks hold one more example); the keys
        come back in the order of `view`.
        """
        if self.bn_splits == 1:
            return self._key_branch(view, training=True)
        n = tf.shape(view)[0]
        sizes = n // self.bn_splits + tf.cast(tf.range(self.bn_splits) < n % self.bn_splits, "int32")
        chunks = tf.split(tf.gather(view, permutation), sizes, num=self.bn_splits, axis=0)
        keys = ops.concatenate([self._key_branch(chunk, training=True) for chunk in chunks], axis=0)
        return tf.gather(keys, tf.math.invert_permutation(permutation))

    def _contrastive(self, x, training):
        view_1, view_2 = split_views(x, self.augmenter, self.encoder, "MoCo")
        # Training keys come from the global batch: every replica gathers all `view_2`s.
        key_views = distributed.all_gather_with_grad(tf.stop_gradient(view_2)) if training else view_2
        checks = self._check_batch(key_views, training)
        with tf.control_dependencies(checks):
            view_1 = tf.identity(view_1)
            view_2 = tf.identity(view_2)
            key_views = tf.identity(key_views)
        q = self.projection_head(self.encoder(view_1, training=training), training=training)
        if training:
            # The keys of the global batch (the local one on one device), computed alike on
            # every replica: batch statistics per chunk of the permuted batch (shuffle-BN
            # stand-in). This replica's positives are its own rows.
            permutation = self._key_permutation(tf.shape(key_views)[0], self.optimizer.iterations)
            all_keys = self._split_keys(key_views, permutation)
            all_keys = tf.stop_gradient(tf.math.l2_normalize(ops.cast(all_keys, "float32"), axis=-1))
            offset = distributed.replica_offset(view_2)
            k = all_keys[offset : offset + tf.shape(view_2)[0]]
        else:
            # Evaluation: moving statistics, nothing updated, no randomness.
            k = self._key_branch(view_2, training=False)
            k = tf.stop_gradient(tf.math.l2_normalize(ops.cast(k, "float32"), axis=-1))
            all_keys = k
        q = tf.math.l2_normalize(ops.cast(q, "float32"), axis=-1)
        losses, hits = info_nce_terms(q, k, ops.convert_to_tensor(self.queue), self.temperature, normalize=False)
        # In float32; this replica's share of the global-batch mean (the plain mean on
        # one device).
        count = ops.shape(losses)[0]
        loss = distributed.global_mean(float32_sum(losses), count)
        accuracy = distributed.global_mean(float32_sum(hits), count)
        shares = {"loss": loss, "contrastive_accuracy": accuracy}
        return self.with_regularization(loss), shares, count, all_finite([view_1, view_2]), all_keys

    def step_loss(self, x, training):
        loss, shares, count, finite, _ = self._contrastive(x, training)
        return loss, shares, count, finite

    def _enqueue(self, keys):
        """Writes `keys` (the global batch's, alike on every replica) after the pointer."""
        n = ops.shape(keys)[0]
        pointer = ops.convert_to_tensor(self.queue_pointer)
        index = (pointer + ops.arange(n, dtype="int32")) % self.queue_size
        queue = ops.scatter_update(ops.convert_to_tensor(self.queue), index[:, None], keys)
        distributed.assign_identical([self.queue, self.queue_pointer], [queue, (pointer + n) % self.queue_size])

    def _momentum_pairs(self):
        return momentum_pairs([self.key_encoder, self.key_projection_head], [self.encoder, self.projection_head])

    def _momentum_update(self):
        """EMA of the query's trainable parameters; the key's other variables are left alone."""
        ema_update(self._momentum_pairs(), self.momentum)

    def _query_trainable_variables(self):
        key_ids = {id(v) for v in self.key_encoder.weights + self.key_projection_head.weights}
        return [v for v in self.trainable_variables if id(v) not in key_ids]

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self._query_trainable_variables()
        # As in the official code: update the key encoder, then compute the keys.
        self._momentum_update()
        with tf.GradientTape() as tape:
            loss, shares, count, finite, keys = self._contrastive(x, training=True)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, trainable), trainable)
        self._enqueue(keys)
        # NaN when the views, or any weight (key encoder and queue included), are not finite.
        return self.report_global_means(shares, count, finite)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "queue_size": self.queue_size,
                "momentum": self.momentum,
                "bn_splits": self.bn_splits,
                "seed": self.seed,
            }
        )
        return config
