"""Source-only training on domain-adaptation batches: the baseline of `DANN` and `DeepCORAL`.

Batch structure shared by `SourceOnly`, `DANN` and `DeepCORAL` (what `fit` receives;
`keras_transfer.datasets.domain_pairs` builds it from two arrays of different sizes):

    ((source_x, target_x), source_y)
    ((source_x, target_x), source_y, source_sample_weight)

`x` is the pair of input batches (same feature shape, any batch sizes), `y` the labels
of the *source* batch only: the target domain is unlabelled. This is Keras's own
`(x, y, sample_weight)` convention, so `keras.utils.unpack_x_y_sample_weight`, `fit`,
`evaluate` and `validation_data` work unchanged. Passing target labels (`y` a pair, or
a third element in `x`) raises a `ValueError`.

`evaluate`/`validation_data` accept the same structure (source validation accuracy
plus the adaptation metrics, e.g. domain accuracy, on held-out source/target) or plain
labelled `(x, y)` batches (e.g. a labelled target test set): then only `loss`,
`label_loss` and `label_accuracy` are reported. `call()` / `predict` / `export()` serve
the label path `label_classifier(feature_extractor(x))`.

`export()` works straight after `fit` and after a `.keras` reload: the serving input is
the feature extractor's declared `keras.Input` (its shape and dtype, integer ids
included), or, for a feature extractor without one, a float32 input of the feature
shape the model was built with (by `fit`, `predict` or `build`).
"""

import keras

from keras_transfer.models._domain_adaptation import DomainAdaptationModel
from keras_transfer.models._domain_adaptation import nan_unless_finite  # noqa: F401 (kept importable)


@keras.saving.register_keras_serializable(package="keras_transfer")
class SourceOnly(DomainAdaptationModel):
    """`label_classifier(feature_extractor(x))` trained on the labelled source domain only.

    The no-adaptation baseline of domain adaptation: it takes the same
    `((source_x, target_x), source_y)` batches as `DANN` and `DeepCORAL` (see the
    module docstring) and ignores `target_x`, so the three are swapped on one
    dataset and report the same `label_loss` / `label_accuracy` metrics. Plain `(x, y)`
    batches work too.

    The label loss is the cross-entropy for integer labels (one-hot labels and a
    single-logit binary head are detected from the shapes), computed in float32.
    Compile with an optimizer only: `model.compile(optimizer="adam")`.

    Args:
        feature_extractor: a Keras model or layer mapping inputs to features.
        label_classifier: a Keras model or layer mapping features to class scores.
        from_logits: whether `label_classifier` outputs logits (default) or probabilities.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of inputs of the feature extractor.
        training: whether the networks run in training mode.

    Raises:
        ValueError: if a network is not a Keras layer or model, or `from_logits` is not
            a bool.

    Reference:
        The baseline of Ganin et al., "Domain-Adversarial Training of Neural
        Networks", JMLR 2016, and of Sun & Saenko, "Deep CORAL", ECCV 2016 Workshops.

    Example:

    >>> feature_extractor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu")])
    >>> model = keras_transfer.models.SourceOnly(feature_extractor, keras.layers.Dense(3))
    >>> tuple(model(np.zeros((2, 4))).shape)
    (2, 3)
    """

    _uses_target = False

    def __init__(self, feature_extractor, label_classifier, from_logits=True, **kwargs):
        super().__init__(feature_extractor, label_classifier, from_logits=from_logits, **kwargs)
        self._build_from_feature_extractor()
