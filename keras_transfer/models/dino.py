"""DINO: self-distillation with no labels, a student matching a momentum teacher (Caron et al., 2021)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.layers.dino_head import DINOHead
from keras_transfer.losses.dino_loss import dino_terms
from keras_transfer.models._contrastive_utils import split_views
from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._momentum import cosine_momentum
from keras_transfer.models._momentum import ema_update
from keras_transfer.models._momentum import frozen_clone
from keras_transfer.models._momentum import momentum_pairs
from keras_transfer.models._self_supervised import SelfSupervisedModel
from keras_transfer.models._self_supervised import check_encoder
from keras_transfer.models._self_supervised import encoder_output_shape
from keras_transfer.models._self_supervised import float32_sum
from keras_transfer.utils import distributed
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_positive_float
from keras_transfer.utils.validation import check_positive_int


def _check_temperatures(student_temperature, teacher_temperature, warmup_teacher_temperature):
    fix = "The paper uses student_temperature=0.1 and teacher_temperature=0.04."
    student = check_positive_float("student_temperature", student_temperature, fix)
    for name, value in (
        ("teacher_temperature", teacher_temperature),
        ("warmup_teacher_temperature", warmup_teacher_temperature),
    ):
        if value is None:
            continue
        check_positive_float(name, value, fix)
        if value >= student:
            raise ValueError(
                f"`{name}` must be below `student_temperature` (the teacher sharpens its targets). "
                f"Received: {name}={value}, student_temperature={student}. "
                "Use e.g. teacher_temperature=0.04 with student_temperature=0.1 (the paper's)."
            )
    return student, float(teacher_temperature)


def _resolve_head(head, feature_dim, out_dim, hidden_dim, bottleneck_dim, num_layers):
    """The head as a built Keras model (`frozen_clone` copies models): the default `DINOHead`, or the user's."""
    if head is None:
        head = DINOHead(out_dim, hidden_dim, bottleneck_dim, num_layers, name="dino_head")
    elif not isinstance(head, keras.layers.Layer):
        raise ValueError(
            "`head` must be a Keras model or layer, or None for the default `DINOHead`. "
            f"Received: head of type {type(head).__name__}"
        )
    if not isinstance(head, keras.Model):
        head = keras.Sequential([keras.Input((feature_dim,)), head], name="head")
    if not head.built:
        head.build((None, feature_dim))
    return head


@keras.saving.register_keras_serializable(package="keras_transfer")
class DINO(SelfSupervisedModel):
    """DINO: a student network trained to match a momentum teacher's centred, sharpened outputs.

    Trains like `BYOL` (`fit` on pairs of views from `keras_transfer.augment.simclr_dataset`,
    or on plain batches with `augmenter=`), with no negatives and no predictor. Student
    `g(f(view))` and teacher `g_t(f_t(view))` (a copy of `(f, g)` made in `__init__`, no
    gradient) map both views to K logits; the loss is
    `keras_transfer.losses.dino_loss`, the student's cross-entropy (temperature
    `student_temperature`) to the teacher's `softmax((t - c) / teacher_temperature)` of
    the OTHER view, averaged over the two pairs. The two views go through each network
    in one batch, as the official multi-crop wrapper does for crops of one size. After
    each optimizer step the teacher follows the student's trainable parameters with
    BYOL's cosine schedule from `momentum` to 1 over `total_steps`, and the centre
    follows the teacher's logits: `c <- center_momentum * c + (1 - center_momentum) *
    mean(t)`, the mean over both views of the GLOBAL batch under `tf.distribute`.
    With `warmup_teacher_temperature`, the teacher temperature rises linearly from it
    to `teacher_temperature` over `warmup_steps` optimizer steps. Teacher, centre and
    the step counter are model weights (and the optimizer's), so a `.keras` file saved
    mid-training resumes exactly. Only the two global views are supported (no
    multi-crop local views).

    `call(x)` (so `predict`, `export`) returns the student encoder's representation
    `f(x)`. Metrics: `loss` and `teacher_entropy` (the mean entropy of the teacher's
    target distribution: 0 means every target is one-hot, log K that the targets are
    uniform, both signs of collapse); NaN for a step on non-finite views or one that
    leaves a weight non-finite.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`. Set its
            weights before building DINO: the teacher encoder is copied here.
        head: Keras model or layer mapping features to K logits, or None for
            `keras_transfer.layers.DINOHead(out_dim, hidden_dim, bottleneck_dim, num_layers)`.
        out_dim: K, the default head's number of prototypes (> 0; the paper: 65536).
        hidden_dim: the default head's hidden width (> 0; 2048).
        bottleneck_dim: the default head's normalised bottleneck (> 0; 256).
        num_layers: the default head's number of Dense layers (> 0; 3).
        student_temperature: tau_s > 0 (0.1).
        teacher_temperature: tau_t, in (0, tau_s) (0.04; the paper warms up to 0.07
            for long runs).
        warmup_teacher_temperature: None, or the teacher temperature at step 0, in
            (0, tau_s), rising linearly to `teacher_temperature` over `warmup_steps`.
        warmup_steps: positive int, the warm-up's length (used with the above).
        center_momentum: m of the centre's EMA, in [0, 1) (0.9).
        momentum: the teacher's EMA coefficient at step 0, in [0, 1) (0.996).
        total_steps: number of optimizer steps over which the teacher's momentum rises
            to 1 (positive int), or None for a constant momentum.
        augmenter: optional layer that makes a view from a batch (e.g. `SimCLRAugmentation`).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the student encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the head is not a Keras layer,
            a size, `warmup_steps` or `total_steps` is not positive, a temperature is
            not positive or a teacher temperature is not below the student's, or a
            momentum lies outside [0, 1).

    Reference:
        Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
        ICCV 2021.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model = keras_transfer.models.DINO(encoder, out_dim=16, hidden_dim=8, bottleneck_dim=4, total_steps=10)
    >>> model.compile(optimizer="adam")
    >>> rng = np.random.default_rng(0)
    >>> views = (rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32"))
    >>> sorted(model.fit(views, batch_size=4, epochs=1, verbose=0).history)
    ['loss', 'teacher_entropy']
    >>> tuple(model.center.shape), tuple(model(np.ones((2, 4))).shape)
    ((16,), (2, 8))
    """

    keras_object_args = ("encoder", "head", "augmenter")

    def __init__(
        self,
        encoder,
        head=None,
        out_dim=65536,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_layers=3,
        student_temperature=0.1,
        teacher_temperature=0.04,
        warmup_teacher_temperature=None,
        warmup_steps=None,
        center_momentum=0.9,
        momentum=0.996,
        total_steps=None,
        augmenter=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        feature_dim = check_encoder(encoder, "DINO")
        sizes = {"out_dim": out_dim, "hidden_dim": hidden_dim, "bottleneck_dim": bottleneck_dim}
        for name, value in sizes.items():
            check_positive_int(name, value, "Pass a positive size (the paper: 65536, 2048, 256).")
        self.out_dim, self.hidden_dim, self.bottleneck_dim = out_dim, hidden_dim, bottleneck_dim
        self.num_layers = check_positive_int("num_layers", num_layers, "The paper uses num_layers=3.")
        self.student_temperature, self.teacher_temperature = _check_temperatures(
            student_temperature, teacher_temperature, warmup_teacher_temperature
        )
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_steps = warmup_steps
        if warmup_teacher_temperature is not None:
            fix = "Pass the warm-up's number of optimizer steps with `warmup_teacher_temperature`."
            self.warmup_steps = check_positive_int("warmup_steps", warmup_steps, fix)
        self.center_momentum = check_fraction("center_momentum", center_momentum, fix="The paper uses 0.9.")
        self.momentum = check_fraction("momentum", momentum, fix="The paper uses 0.996 (0.99 for a few hundred steps).")
        self.total_steps = None if total_steps is None else check_positive_int("total_steps", total_steps)
        self.encoder = encoder
        self.head = _resolve_head(head, feature_dim, out_dim, hidden_dim, bottleneck_dim, self.num_layers)
        self.augmenter = augmenter
        self.teacher_encoder = frozen_clone(encoder)
        self.teacher_head = frozen_clone(self.head)
        k = int(self.head.compute_output_shape(encoder_output_shape(encoder))[-1])
        self.center = self.add_weight(shape=(k,), initializer="zeros", trainable=False, dtype="float32", name="center")
        self.trackers = [keras.metrics.Mean(name="loss"), keras.metrics.Mean(name="teacher_entropy")]
        self.build(tuple(encoder.inputs[0].shape))

    @property
    def metrics(self):
        return list(self.trackers)

    def teacher_momentum(self, step):
        """The teacher's EMA coefficient after optimizer step `step` (0-based), a float32 scalar tensor.

        Args:
            step: int or int tensor, the optimizer's step count before the update.

        Returns:
            `1 - (1 - momentum) * (cos(pi * min(step / total_steps, 1)) + 1) / 2`, or
            `momentum` when `total_steps` is None.
        """
        return cosine_momentum(self.momentum, step, self.total_steps)

    def teacher_temperature_at(self, step):
        """The teacher temperature at optimizer step `step`, a float32 scalar tensor.

        Args:
            step: int or int tensor, the optimizer's step count.

        Returns:
            `teacher_temperature`, or during the warm-up
            `warmup + (teacher_temperature - warmup) * step / warmup_steps`.
        """
        if self.warmup_teacher_temperature is None:
            return ops.convert_to_tensor(self.teacher_temperature, "float32")
        progress = ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)
        start = self.warmup_teacher_temperature
        return start + (self.teacher_temperature - start) * progress

    def _logits(self, encoder, head, views, training):
        """`(2, n, K)` float32 logits of both views, run through the networks as one batch."""
        n = ops.shape(views[0])[0]
        logits = head(encoder(ops.concatenate(views, axis=0), training=training), training=training)
        return ops.reshape(ops.cast(logits, "float32"), (2, n, -1))

    def _forward(self, x, training):
        views = split_views(x, self.augmenter, self.encoder, "DINO")
        step = self.optimizer.iterations if getattr(self, "optimizer", None) is not None else 0
        temperature = self.teacher_temperature_at(step)
        student = self._logits(self.encoder, self.head, views, training)
        teacher = tf.stop_gradient(self._logits(self.teacher_encoder, self.teacher_head, views, training))
        center = ops.convert_to_tensor(self.center)
        terms = dino_terms(student, teacher, center, self.student_temperature, temperature)
        log_q = ops.log_softmax((teacher - center) / temperature, axis=-1)
        entropy = ops.mean(-ops.sum(ops.exp(log_q) * log_q, axis=-1), axis=0)  # (n,): mean over the views
        count = ops.shape(terms)[0]
        loss = distributed.global_mean(float32_sum(terms), count)
        shares = {"loss": loss, "teacher_entropy": distributed.global_mean(float32_sum(entropy), count)}
        return self.with_regularization(loss), shares, count, all_finite(list(views)), teacher

    def step_loss(self, x, training):
        loss, shares, count, finite, _ = self._forward(x, training)
        return loss, shares, count, finite

    def _student_trainable_variables(self):
        teacher_ids = {id(v) for v in self.teacher_encoder.weights + self.teacher_head.weights}
        return [v for v in self.trainable_variables if id(v) not in teacher_ids]

    def _update_center(self, teacher):
        """`c <- m c + (1 - m) mean(t)`, the mean over both views of the global batch."""
        teacher = ops.reshape(teacher, (-1, ops.shape(teacher)[-1]))
        total = distributed.all_reduce_sum(ops.sum(teacher, axis=0))
        rows = distributed.all_reduce_sum(ops.cast(ops.shape(teacher)[0], "float32"))
        m = self.center_momentum
        distributed.assign_identical([self.center], [m * ops.convert_to_tensor(self.center) + (1.0 - m) * total / rows])

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self._student_trainable_variables()
        tau = self.teacher_momentum(ops.convert_to_tensor(self.optimizer.iterations))  # read before the update
        with tf.GradientTape() as tape:
            loss, shares, count, finite, teacher = self._forward(x, training=True)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, trainable), trainable)
        # As in the official code: the loss used the old centre; the teacher follows the UPDATED student.
        ema_update(momentum_pairs([self.teacher_encoder, self.teacher_head], [self.encoder, self.head]), tau)
        self._update_center(teacher)
        return self.report_global_means(shares, count, finite)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "out_dim": self.out_dim,
                "hidden_dim": self.hidden_dim,
                "bottleneck_dim": self.bottleneck_dim,
                "num_layers": self.num_layers,
                "student_temperature": self.student_temperature,
                "teacher_temperature": self.teacher_temperature,
                "warmup_teacher_temperature": self.warmup_teacher_temperature,
                "warmup_steps": self.warmup_steps,
                "center_momentum": self.center_momentum,
                "momentum": self.momentum,
                "total_steps": self.total_steps,
            }
        )
        return config
