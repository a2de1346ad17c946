"""Knowledge distillation (Hinton et al., 2015) on Keras's `keras.distillation.Distiller`."""

import keras

from keras_transfer.losses.projected_feature_distillation import ProjectedFeatureDistillation
from keras_transfer.losses.soft_target_distillation import SoftTargetDistillation
from keras_transfer.models.knowledge_distiller import KnowledgeDistiller
from keras_transfer.utils import validation


def distill(
    teacher,
    student,
    temperature=4.0,
    alpha=0.5,
    feature_layers=None,
    feature_weight=1.0,
    feature_loss="mse",
    feature_projection="auto",
    name="distiller",
):
    """A model that trains `student` on `teacher`'s soft targets (and hard labels) with `fit`.

    The training loss, for a batch `(x, y)`, is

        alpha * CE(y, s) + (1 - alpha) * (T^2 * KL(softmax(t / T) || softmax(s / T))
                                          + feature_weight * sum_k mse(f_t_k, f_s_k))

    with `t` the teacher's logits and `s` the student's logits on `x`, `T =
    temperature`, the KL divergence and the MSE averaged over the batch (and feature
    elements), and `f_t_k`, `f_s_k` the outputs of the `feature_layers` pairs. `fit(x)`
    without labels trains on the soft targets alone (the `CE` term is left out, the
    rest still weighted `1 - alpha`): distillation on unlabelled data. `compile()`
    defaults the hard-label loss `CE` to sparse categorical cross-entropy on logits.

    The teacher is frozen (`trainable = False`, called with `training=False`). A
    teacher that ends in a softmax (e.g. `build_classifier`'s default head) is
    distilled through a copy whose last layer returns its logits (same weights); the
    teacher passed in is then left as it was. After `fit`, `distiller.student` is the
    trained student, a plain Keras model to `save`, `export` or fine-tune further;
    `distiller.save("x.keras")` saves teacher, student and optimizer state and reloads
    compiled, without `custom_objects`. Keras's `Distiller` ignores `sample_weight`.

    Args:
        teacher: a trained, built `keras.Model` with one `(batch, classes)` output
            (logits, or softmax probabilities from a last `Dense`/`Softmax` layer).
        student: a built `keras.Model` with the same inputs and one output of the same
            shape, returning logits (no softmax).
        temperature: softmax temperature `T` (> 0) of the soft targets.
        alpha: weight of the hard-label loss, in [0, 1]; `1 - alpha` weighs the
            distillation terms. 0 is distillation alone.
        feature_layers: None, or `{teacher_layer_name: student_layer_name}` (or a list of
            such pairs): top-level layers of the two (functional) models whose outputs,
            of the same shape up to the last axis, are matched with `feature_loss`
            (FitNets-style hints).
        feature_weight: weight of each feature term relative to the soft targets (>= 0).
        feature_loss: a Keras loss name or function for the feature terms.
        feature_projection: "auto" (a learned `Dense` map of the student's features to
            the teacher's width where the last axes differ: FitNets' regressor, trained
            with the student, not part of it), True (always) or False (never: the shapes
            must be equal).
        name: the distiller's name.

    Returns:
        A `keras_transfer.models.KnowledgeDistiller` (a `keras.distillation.Distiller`):
        `compile` it, then `fit` with `(x, y)` or `x` alone.

    Raises:
        ValueError: if `temperature` <= 0, `alpha` is outside [0, 1], a model is not a
            built `keras.Model` with one output, the output shapes differ, the student
            ends in a softmax, or a feature layer is missing or the two feature shapes
            differ (other than in the last axis, with a projection).

    Reference:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015;
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    Example:

    >>> keras.utils.set_random_seed(0)
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = keras_transfer.recipes.distill(teacher, student, temperature=2.0, alpha=0.0)
    >>> distiller.compile(optimizer="adam")
    >>> x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    >>> history = distiller.fit(x, epochs=2, verbose=0)  # unlabelled: soft targets only
    >>> history.history["total_loss"][1] < history.history["total_loss"][0]
    True
    >>> distiller.student is student, teacher.trainable  # the softmax teacher is left as it was
    (True, True)
    """
    temperature = validation.check_positive_float(
        "temperature", temperature, "Typical values are 2 to 8; 1 is the plain softmax."
    )
    alpha = validation.check_fraction(
        "alpha", alpha, inclusive_high=True, fix="It weighs the hard-label loss; 1 - alpha weighs the soft targets."
    )
    feature_weight = validation.check_non_negative_float("feature_weight", feature_weight)
    validation.check_one_of("feature_projection", feature_projection, ("auto", True, False))
    for arg, model in (("teacher", teacher), ("student", student)):
        _check_model(arg, model)
    t_shape, s_shape = _output_shape(teacher), _output_shape(student)
    if t_shape is not None and s_shape is not None and tuple(t_shape[1:]) != tuple(s_shape[1:]):
        raise ValueError(
            "`student` must have the teacher's output shape (one logit per class). Received: "
            f"student output shape {tuple(s_shape)}, teacher output shape {tuple(t_shape)}. "
            "Give the student's last Dense layer as many units as the teacher has classes."
        )
    if _softmax_layer(student) is not None:
        raise ValueError(
            f"`student` must return logits, not softmax probabilities. Received: student={student.name!r} "
            "ending in a softmax. Build it with a linear last layer (e.g. `activation=None`); apply "
            "`keras.ops.softmax` to its predictions after distillation."
        )
    losses = [SoftTargetDistillation(temperature)]
    for t_name, s_name, t_width, s_width in _feature_pairs(feature_layers, teacher, student, feature_projection):
        if feature_projection is True or t_width != s_width:
            losses.append(ProjectedFeatureDistillation(feature_loss, t_name, s_name, s_width, t_width))
        else:
            losses.append(keras.distillation.FeatureDistillation(feature_loss, t_name, s_name))
    return KnowledgeDistiller(
        teacher=_logits_teacher(teacher),
        student=student,
        distillation_losses=losses,
        distillation_loss_weights=[1.0] + [feature_weight] * (len(losses) - 1),
        student_loss_weight=alpha,
        name=name,
    )


def _check_model(arg, model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"`{arg}` must be a keras.Model. Received: {arg}={model!r}")
    if not model.built:
        raise ValueError(
            f"`{arg}` must be built (its weights created). Received: {arg}={model.name!r}, not built. "
            f"Give it a `keras.Input` or call it once on a batch, e.g. `{arg}(x[:1])`."
        )
    outputs = getattr(model, "outputs", None)
    if outputs is not None and len(outputs) != 1:
        raise ValueError(
            f"`{arg}` must have one output (the class logits). Received: {arg}={model.name!r} with "
            f"{len(outputs)} outputs. Build a model that returns only the classification output."
        )


def _output_shape(model):
    """The static output shape of a functional/Sequential model, else None (checked by Keras at `fit`)."""
    outputs = getattr(model, "outputs", None)
    return tuple(outputs[0].shape) if outputs else None


def _softmax_layer(model):
    """The model's last layer if it applies a softmax to the output, else None."""
    if not getattr(model, "outputs", None) or not model.layers:
        return None
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return last
    activation = getattr(last, "activation", None)
    if activation is keras.activations.softmax or getattr(activation, "__name__", None) == "softmax":
        return last
    return None


def _logits_teacher(teacher):
    """`teacher`, or a same-weights copy returning logits when its last layer applies a softmax."""
    last = _softmax_layer(teacher)
    if last is None:
        return teacher
    if isinstance(last, keras.layers.Softmax) or not hasattr(last, "activation"):
        return keras.Model(teacher.inputs, last.input, name=f"{teacher.name}_logits")

    def clone(layer):
        config = layer.get_config()
        if layer is last:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    logits = keras.models.clone_model(teacher, clone_function=clone)
    logits.set_weights(teacher.get_weights())
    return logits


def _feature_pairs(feature_layers, teacher, student, feature_projection):
    """`feature_layers` as `[(teacher_layer, student_layer, teacher_width, student_width)]`, checked."""
    if feature_layers is None:
        return []
    pairs = list(feature_layers.items()) if isinstance(feature_layers, dict) else list(feature_layers)
    if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise ValueError(
            "`feature_layers` must be a non-empty dict {teacher_layer_name: student_layer_name} or list of "
            f"(teacher_layer_name, student_layer_name) pairs. Received: feature_layers={feature_layers!r}"
        )
    for arg, model in (("teacher", teacher), ("student", student)):
        if getattr(model, "outputs", None) is None:
            raise ValueError(
                f"`{arg}` must be a functional or Sequential model to match features. Received: "
                f"{arg}={model.name!r}, a subclassed model. Pass feature_layers=None."
            )
    checked = []
    for t_name, s_name in pairs:
        shapes = []
        for arg, model, layer_name in (("teacher", teacher, t_name), ("student", student, s_name)):
            names = [layer.name for layer in model.layers]
            if layer_name not in names:
                raise ValueError(
                    f"`feature_layers` must name top-level layers of the {arg}. Received: {layer_name!r} "
                    f"for the {arg} ({model.name!r}), whose layers are {names}."
                )
            shapes.append(tuple(model.get_layer(layer_name).output.shape[1:]))
        projected = feature_projection is not False and shapes[0][:-1] == shapes[1][:-1] and None not in shapes[1][-1:]
        if shapes[0] != shapes[1] and not projected:
            raise ValueError(
                "`feature_layers` must pair layers whose outputs have the same shape"
                + (" up to the last axis" if feature_projection is not False else "")
                + f". Received: ({t_name!r}, {s_name!r}) with shapes {shapes[0]} and {shapes[1]}. "
                + (
                    "Pick layers of equal width, or pass feature_projection='auto' to learn a map to the teacher's."
                    if feature_projection is False
                    else "Pick layers with the same spatial size (a learned map only changes the last axis)."
                )
            )
        checked.append((str(t_name), str(s_name), shapes[0][-1], shapes[1][-1]))
    return checked
