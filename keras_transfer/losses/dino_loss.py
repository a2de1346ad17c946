"""DINO's self-distillation cross-entropy (Caron et al., 2021).

The student sees V_s views of each image, the teacher the first V_t of them (the global
views; V_t <= V_s). With the teacher's logits centred by `c` and sharpened by a low
temperature, and the student's softened by a higher one,

    P_t(i) = softmax((t_i - c) / tau_t),    log P_s(v) = log_softmax(s_v / tau_s),
    L = 1 / |pairs| * sum_{i < V_t, v < V_s, v != i} mean_n H(P_t(i)_n, P_s(v)_n),

with `H(p, q) = -sum_k p_k log q_k` and no gradient to the teacher (the paper's
Algorithm 1 and `DINOLoss` of the official code). Centring stops one prototype from
dominating; sharpening stops the uniform collapse. Written by hand: neither Keras,
keras-hub nor keras-cv ship it.
"""

import numbers

import tensorflow as tf
from keras import ops

from keras_transfer.ops.numerics import cast_scalar
from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils.validation import check_positive_float


def _as_views(logits, name):
    """`(views, batch, K)` from a list of `(batch, K)` tensors or a stacked tensor."""
    if isinstance(logits, (list, tuple)):
        logits = ops.stack([ops.convert_to_tensor(v) for v in logits], axis=0)
    logits = ops.convert_to_tensor(logits)
    if len(logits.shape) != 3:
        raise ValueError(
            f"`{name}` must be (views, batch, K) or a list of (batch, K) tensors. "
            f"Received: {name}.shape={tuple(logits.shape)}"
        )
    return logits


def _check_temperatures(student_temperature, teacher_temperature):
    """Python temperatures: positive, the teacher's below the student's. Tensors (a schedule) pass."""
    if isinstance(student_temperature, numbers.Number):
        check_positive_float("student_temperature", student_temperature)
    if isinstance(teacher_temperature, numbers.Number):
        check_positive_float("teacher_temperature", teacher_temperature)
        if isinstance(student_temperature, numbers.Number) and teacher_temperature >= student_temperature:
            raise ValueError(
                "`teacher_temperature` must be below `student_temperature` (the teacher sharpens). "
                f"Received: teacher_temperature={teacher_temperature}, student_temperature={student_temperature}. "
                "Use e.g. teacher_temperature=0.04 with student_temperature=0.1."
            )


def _check_views(student, teacher, center):
    s_views, t_views = student.shape[0], teacher.shape[0]
    if s_views is not None and s_views < 2:
        raise ValueError(
            f"`student_logits` must hold at least 2 views (the loss pairs different views). "
            f"Received: student_logits.shape={tuple(student.shape)}"
        )
    if s_views is not None and t_views is not None and t_views > s_views:
        raise ValueError(
            "`teacher_logits` must hold at most as many views as `student_logits` (the teacher's views are the "
            f"student's first ones). Received: teacher_logits.shape={tuple(teacher.shape)}, "
            f"student_logits.shape={tuple(student.shape)}"
        )
    k = {student.shape[-1], teacher.shape[-1], center.shape[-1]} - {None}
    if len(k) > 1 or student.shape[1:-1] != teacher.shape[1:-1] and None not in (student.shape[1], teacher.shape[1]):
        raise ValueError(
            "`student_logits`, `teacher_logits` and `center` must share the batch and the K prototypes. "
            f"Received: student_logits.shape={tuple(student.shape)}, teacher_logits.shape={tuple(teacher.shape)}, "
            f"center.shape={tuple(center.shape)}"
        )


def teacher_probabilities(teacher_logits, center, teacher_temperature):
    """`softmax((t - center) / teacher_temperature)` along the last axis, with no gradient (float32/64)."""
    teacher_logits = ops.convert_to_tensor(teacher_logits)
    dtype = compute_dtype(teacher_logits)
    centred = ops.cast(teacher_logits, dtype) - ops.reshape(ops.cast(center, dtype), (-1,))
    return tf.stop_gradient(ops.softmax(centred / cast_scalar(teacher_temperature, dtype), axis=-1))


def dino_terms(student_logits, teacher_logits, center, student_temperature=0.1, teacher_temperature=0.04):
    """Per-example DINO loss, shape `(batch,)`: the cross-entropy averaged over the view pairs
    (see `dino_loss`); its batch mean is the loss."""
    _check_temperatures(student_temperature, teacher_temperature)
    student = _as_views(student_logits, "student_logits")
    teacher = _as_views(teacher_logits, "teacher_logits")
    center = ops.convert_to_tensor(center)
    _check_views(student, teacher, center)
    dtype = compute_dtype(student)
    q = ops.cast(teacher_probabilities(teacher, center, teacher_temperature), dtype)
    log_p = ops.log_softmax(ops.cast(student, dtype) / cast_scalar(student_temperature, dtype), axis=-1)
    cross = -ops.einsum("ink,vnk->ivn", q, log_p)  # (V_t, V_s, batch)
    t_views, s_views = ops.shape(q)[0], ops.shape(log_p)[0]
    different = ops.cast(ops.not_equal(ops.arange(t_views)[:, None], ops.arange(s_views)[None, :]), dtype)
    pairs = ops.cast(t_views * s_views - t_views, dtype)
    return ops.sum(cross * different[:, :, None], axis=(0, 1)) / pairs


def dino_loss(student_logits, teacher_logits, center, student_temperature=0.1, teacher_temperature=0.04):
    """DINO's loss: the student's cross-entropy to the centred, sharpened teacher, over view pairs.

    Args:
        student_logits: `(V_s, N, K)` (or a list of V_s `(N, K)` tensors) student head
            outputs of V_s >= 2 views of N images.
        teacher_logits: `(V_t, N, K)` teacher head outputs of the first V_t <= V_s
            views (the global views); no gradient reaches them.
        center: `(K,)` (or `(1, K)`) centre subtracted from the teacher's logits.
        student_temperature: tau_s > 0 (the paper: 0.1).
        teacher_temperature: tau_t, in (0, tau_s) (the paper: 0.04, warmed up to
            0.07); a scalar tensor is accepted (a schedule) and not checked.

    Returns:
        Scalar float32 (float64 for float64 inputs): the mean over the batch and over
        the `V_t * V_s - V_t` pairs of different views of
        `-sum_k softmax((t_i - c) / tau_t)_k * log_softmax(s_v / tau_s)_k`.

    Raises:
        ValueError: if a temperature is not positive, `teacher_temperature >=
            student_temperature`, the logits are not 3-D, there are fewer than 2
            student views or more teacher views than student views, or the shapes
            disagree.

    Reference:
        Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
        ICCV 2021.

    Example:

    >>> t = np.array([[[4.0, 0.0], [0.0, 4.0]]] * 2, "float32")  # 2 views, 2 images, K = 2
    >>> round(float(keras_transfer.losses.dino_loss(t, t, np.zeros(2, "float32"))), 4)  # student = teacher
    0.0
    >>> round(float(keras_transfer.losses.dino_loss(-t, t, np.zeros(2, "float32"))), 4)  # opposite: 4 / 0.1
    40.0
    """
    return ops.mean(dino_terms(student_logits, teacher_logits, center, student_temperature, teacher_temperature))
