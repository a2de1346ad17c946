"""WiSE-FT: weight-space ensembling of a zero-shot and a fine-tuned model (Wortsman et al., 2022).

`theta(alpha) = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned`, weight
by weight, for two models of the same architecture (fine-tune the zero-shot
classifier from `build_zero_shot_classifier` so its head starts at the
zero-shot head). Keras has no weight interpolation helper; written here.
"""

import keras
import numpy as np

from keras_transfer.utils import validation


def wise_ft(zero_shot_model, fine_tuned_model, alpha=0.5):
    """WiSE-FT: a new model holding `(1 - alpha) * zero_shot + alpha * fine_tuned` weights.

    Every floating-point weight is interpolated, the non-trainable ones (e.g.
    BatchNorm statistics) too, in float64 and cast back to its dtype; a
    non-float weight is taken from `fine_tuned_model` when `alpha >= 0.5`, else
    from `zero_shot_model`. The two models are left unchanged.

    Args:
        zero_shot_model: the `keras.Model` before fine-tuning.
        fine_tuned_model: a `keras.Model` of the same architecture after fine-tuning.
        alpha: mixing coefficient in [0, 1]; 0 gives the zero-shot weights, 1 the
            fine-tuned ones.

    Returns:
        A clone of `fine_tuned_model` (`keras.models.clone_model`) holding the mixed
        weights.

    Raises:
        ValueError: if `alpha` is outside [0, 1], a model is not a `keras.Model`, or the
            two models' weights differ in number or shape.

    Reference:
        Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022.

    Example:

    >>> zero_shot = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> zero_shot.set_weights([np.zeros((2, 1)), np.zeros(1)])
    >>> fine_tuned = keras.models.clone_model(zero_shot)
    >>> fine_tuned.set_weights([np.ones((2, 1)), np.ones(1)])
    >>> mixed = keras_transfer.recipes.wise_ft(zero_shot, fine_tuned, alpha=0.25)
    >>> [w.tolist() for w in mixed.get_weights()]
    [[[0.25], [0.25]], [0.25]]
    """
    alpha = validation.check_fraction("alpha", alpha, inclusive_low=True, inclusive_high=True)
    for name, model in (("zero_shot_model", zero_shot_model), ("fine_tuned_model", fine_tuned_model)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"`{name}` must be a keras.Model. Received: {name}={model!r}")
    w0, w1 = zero_shot_model.get_weights(), fine_tuned_model.get_weights()
    shapes0, shapes1 = [w.shape for w in w0], [w.shape for w in w1]
    if shapes0 != shapes1:
        raise ValueError(
            "`zero_shot_model` and `fine_tuned_model` must have the same architecture (the same "
            f"weights in the same order). Received: {len(shapes0)} weights {shapes0[:4]}... and "
            f"{len(shapes1)} weights {shapes1[:4]}... Fine-tune a copy of the zero-shot model."
        )
    mixed = [
        ((1.0 - alpha) * a.astype("float64") + alpha * b.astype("float64")).astype(a.dtype)
        if np.issubdtype(a.dtype, np.floating)
        else (b if alpha >= 0.5 else a)
        for a, b in zip(w0, w1)
    ]
    model = keras.models.clone_model(fine_tuned_model)
    model.set_weights(mixed)
    return model
