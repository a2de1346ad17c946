"""TENT: fully test-time adaptation of a trained classifier by entropy minimisation."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import nan_unless
from keras_transfer.models._finite_logs import weights_finite
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.ops.entropy import prediction_entropy
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation

NORM_LAYERS = ("batch", "all")


class _BatchStatisticsCall:
    """Replaces one BatchNormalization layer's `call`: it normalises with the moments of the batch
    it is given (TENT discards the source statistics); its moving statistics are left as they are.
    Keras's BatchNormalization has no such mode (its batch moments come with training mode, which
    also turns dropout on): written by hand, as `recipes.adapt_batch_norm`'s recorder."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, inputs, training=None, mask=None):
        layer = self.layer
        x = ops.cast(inputs, "float32")
        axis = layer.axis if layer.axis >= 0 else len(x.shape) + layer.axis
        mean, variance = ops.moments(x, axes=[i for i in range(len(x.shape)) if i != axis])
        shape = [1] * len(x.shape)
        shape[axis] = x.shape[axis]
        outputs = (x - ops.reshape(mean, shape)) * ops.rsqrt(ops.reshape(variance, shape) + layer.epsilon)
        if layer.scale:
            outputs = outputs * ops.reshape(ops.cast(layer.gamma, "float32"), shape)
        if layer.center:
            outputs = outputs + ops.reshape(ops.cast(layer.beta, "float32"), shape)
        return ops.cast(outputs, inputs.dtype)


def _copy(classifier):
    """A Functional copy of `classifier` with its weights (Keras's `clone_model`, nested models too)."""
    copy = keras.models.clone_model(model_graph.as_functional(classifier), recursive=True)
    copy.set_weights(classifier.get_weights())
    return copy


def _norm_layers(classifier, norm_layers):
    kinds = (keras.layers.BatchNormalization,) if norm_layers == "batch" else model_graph.NORMALIZATION_LAYERS
    found, seen = [], set()
    for _, layer in model_graph.iter_all_layers(classifier):
        if isinstance(layer, kinds) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    if not found:
        names = "BatchNormalization" if norm_layers == "batch" else "normalization (Batch/Layer/Group/RMS)"
        raise ValueError(
            "TENT needs normalization layers to adapt: `classifier` must contain at least one "
            f"{names} layer. Received: model {classifier.name!r} with no {names} layer "
            f"(norm_layers={norm_layers!r}). Add BatchNormalization layers to the classifier (and train it), "
            "or pass norm_layers='all' for a model with LayerNormalization or GroupNormalization."
        )
    return found


def _check_classifier(classifier):
    graph = isinstance(classifier, keras.Sequential) or model_graph.is_functional(classifier)
    if not graph:
        raise ValueError(
            "`classifier` must be a Functional or Sequential Keras model (TENT copies its layer graph). "
            f"Received: classifier of type {type(classifier).__name__}. Wrap a subclassed model as "
            "keras.Sequential([keras.Input(input_shape), model])."
        )
    if not classifier.built or not getattr(classifier, "inputs", None):
        raise ValueError(
            f"`classifier` must be built with known inputs. Received: classifier={classifier.name!r}, an unbuilt "
            f"{type(classifier).__name__}. Start it with keras.Input(shape), or call `build`, and train it first."
        )


def _affine_weights(layer):
    return [v for v in (getattr(layer, "gamma", None), getattr(layer, "beta", None)) if v is not None]


@keras.saving.register_keras_serializable(package="keras_transfer")
class TENT(ExportsDeclaredInputs, TrainStepModel):
    """Adapts a trained classifier to unlabelled test data by minimising its prediction entropy.

    TENT (Wang et al., 2021) keeps every weight of the classifier fixed except the
    affine parameters (gamma, beta) of its normalization layers, and trains those on
    the unlabelled target inputs to minimise the mean Shannon entropy of the
    predictions (`keras_transfer.ops.prediction_entropy`). Its BatchNormalization
    layers normalise with the statistics of the batch they are given, in `fit` and in
    `call` / `predict` / `export()` alike (the source statistics are discarded, as in
    the paper; the moving statistics are never changed), so predictions depend on the
    batch: predict in batches of, say, 64 or more. Other layers (dropout, ...) run in
    inference mode. Nothing but the gammas and betas changes.

    The classifier is copied (`keras.models.clone_model`, weights included): the model
    passed in is not changed. `model.classifier` is the adapted copy.

    Offline protocol: `compile(optimizer=...)`, `fit(x_target)` (one or more epochs
    over the unlabelled target inputs; the log `loss` is the mean entropy), then
    `predict`. Online protocol (the paper's main setting): `adapt_and_predict(x)`
    takes one step on each test batch, then predicts that batch with the updated
    parameters, batch after batch. `reset()` restores the normalization parameters and
    the optimizer state of the start (episodic TENT); the starting gammas and betas are
    weights of the model (`initial_state`), so `reset()` works after a `.keras` reload.

    Labels are refused (`fit(x, y)` raises): TENT is unsupervised by definition;
    measure accuracy on `predict`'s outputs. `evaluate(x)` reports the mean entropy.

    Args:
        classifier: a built Functional or Sequential Keras model mapping inputs to
            class scores (nested models are fine). Wrap a subclassed model as
            `keras.Sequential([keras.Input(shape), model])`.
        from_logits: whether `classifier` outputs logits (default) or probabilities.
        norm_layers: which normalization layers adapt: "batch" (BatchNormalization, the
            paper) or "all" (also LayerNormalization, GroupNormalization, RMSNormalization).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of inputs of the classifier.
        training: unused (BatchNorm always uses batch statistics; dropout is off).

    Raises:
        ValueError: if `classifier` is not a built Functional or Sequential model or has
            no normalization layer of the kind asked, `norm_layers` or `from_logits` is
            not valid, labels are passed to `fit` / `evaluate`, or BatchNorm would see
            batches of one example.

    Reference:
        Wang, Shelhamer, Liu, Olshausen & Darrell, "Tent: Fully Test-Time Adaptation
        by Entropy Minimization", ICLR 2021.

    Example:

    >>> classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
    ...     keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Dense(3)])
    >>> model = keras_transfer.models.TENT(classifier)
    >>> [v.name for v in model.trainable_weights]
    ['gamma', 'beta']
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01))
    >>> x = np.random.default_rng(0).normal(size=(32, 4))
    >>> sorted(model.fit(x, batch_size=16, verbose=0).history)
    ['loss']
    >>> model.adapt_and_predict(x, batch_size=16).shape
    (32, 3)
    >>> model.reset()
    """

    keras_object_args = ("classifier",)

    def __init__(self, classifier, from_logits=True, norm_layers="batch", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be True or False. Received: from_logits={from_logits!r}")
        validation.check_one_of("norm_layers", norm_layers, NORM_LAYERS)
        _check_classifier(classifier)
        self.from_logits = from_logits
        self.norm_layers = norm_layers
        self.classifier = _copy(classifier)
        self._norms = _norm_layers(self.classifier, norm_layers)
        self._freeze_all_but_affine()
        self._batch_norms = [layer for layer in self._norms if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in self._batch_norms:
            layer.call = _BatchStatisticsCall(layer)  # an instance attribute: not saved, set again on load
        self._state = [v for layer in self._norms for v in _affine_weights(layer)]
        self.initial_state = [
            self.add_weight(shape=v.shape, dtype=v.dtype, initializer="zeros", trainable=False, name=f"initial_{i}")
            for i, v in enumerate(self._state)
        ]
        for initial, v in zip(self.initial_state, self._state):
            initial.assign(v)
        self.entropy_tracker = keras.metrics.Mean(name="loss")
        self._optimizer_initial = None
        self.built = True

    def _freeze_all_but_affine(self):
        self.classifier.trainable = True
        keep = {id(v) for layer in self._norms for v in _affine_weights(layer)}
        for v in self.classifier.weights:
            v.trainable = id(v) in keep

    @property
    def metrics(self):
        return [self.entropy_tracker]

    def call(self, inputs, training=False):
        return float32_outputs(self.classifier(inputs, training=False))

    def serving_input_signature(self):
        """`export()`'s input: the classifier's declared inputs, any batch size.

        Returns:
            A one-element list: the `keras.InputSpec` structure of `classifier.input`.
        """
        return [tf.nest.map_structure(input_spec_like, self.classifier.input)]

    def _entropy(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is not None:
            raise ValueError(
                "TENT adapts without labels: `y` must be None. Received: labelled batches (x, y). Pass the "
                "inputs only, e.g. fit(x_target), and compare `predict(x)` with the labels yourself."
            )
        y_pred = self.classifier(x, training=False)
        return prediction_entropy(y_pred, from_logits=self.from_logits)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self._entropy(data)
            total = loss + (ops.sum(self.losses) if self.losses else 0.0)
            scaled = self.optimizer.scale_loss(total / tf.distribute.get_strategy().num_replicas_in_sync)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.entropy_tracker.update_state(nan_unless(weights_finite(self), loss))
        return self.get_metrics_result()

    def test_step(self, data):
        self.entropy_tracker.update_state(nan_unless(weights_finite(self), self._entropy(data)))
        return self.get_metrics_result()

    def build_optimizer(self):
        """Creates the optimizer's variables now, and keeps their values for `reset()`."""
        super().build_optimizer()
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and optimizer.built:
            self._optimizer_initial = [np.array(v.numpy()) for v in optimizer.variables]

    def reset(self):
        """Restores the starting normalization parameters (gammas, betas) and optimizer state.

        The starting values are those at construction (kept as the model's
        `initial_state` weights, saved with it); the optimizer's are those `compile`
        created. Call it between test episodes (episodic TENT).
        """
        for v, initial in zip(self._state, self.initial_state):
            v.assign(initial)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and self._optimizer_initial is not None:
            for v, initial in zip(optimizer.variables, self._optimizer_initial):
                v.assign(initial)

    def _check_batch_size(self, x, batch_size, argname="batch_size"):
        if not self._batch_norms or isinstance(x, tf.data.Dataset) or x is None:
            return
        rows = len(tf.nest.flatten(x)[0])
        size = 32 if batch_size is None else batch_size
        if rows == 1 or size == 1 or rows % size == 1:
            raise ValueError(
                f"`{argname}` must give BatchNormalization batches of at least 2 examples: TENT normalizes with "
                f"the batch statistics, which are degenerate for one example. Received: {argname}={batch_size!r} "
                f"for {rows} examples (a batch of 1). Use a larger batch size, or one that divides the examples."
            )

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_labels(y)
        self._check_batch_size(x, batch_size)
        return super().fit(x, y, batch_size, *args, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_labels(y)
        self._check_batch_size(x, batch_size)
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    def predict(self, x, batch_size=None, *args, **kwargs):
        self._check_batch_size(x, batch_size)
        return super().predict(x, batch_size, *args, **kwargs)

    def _check_labels(self, y):
        if y is not None:
            raise ValueError(
                "TENT adapts without labels: `y` must be None. Received: y of type "
                f"{type(y).__name__}. Pass the inputs only, e.g. fit(x_target), and compare `predict(x)` "
                "with the labels yourself."
            )

    def adapt_and_predict(self, x, batch_size=32):
        """The online protocol: one adaptation step on each batch, then that batch's predictions.

        Batches are taken in order; each prediction uses the parameters after the step
        on its own batch (and all earlier ones). The paper's code returns the outputs
        of the adaptation forward pass instead (the parameters before that step).
        Call `reset()` first for a fresh episode.

        Args:
            x: target inputs (array, or structure of arrays), or a `tf.data.Dataset`
                of input batches.
            batch_size: rows per batch for arrays (at least 2 with BatchNorm).

        Returns:
            NumPy array of the predictions of all batches, in order.

        Raises:
            ValueError: if the model is not compiled, `batch_size` is not a positive
                integer, or a batch would hold one example.
        """
        if getattr(self, "optimizer", None) is None:
            raise ValueError("`adapt_and_predict` needs an optimizer. Received: an uncompiled model. Call compile().")
        if isinstance(x, tf.data.Dataset):
            batches = x
        else:
            validation.check_positive_int("batch_size", batch_size)
            self._check_batch_size(x, batch_size)
            starts = range(0, len(tf.nest.flatten(x)[0]), batch_size)
            batches = (tf.nest.map_structure(lambda a, s=s: a[s : s + batch_size], x) for s in starts)
        outputs = []
        for batch in batches:
            self.train_on_batch(batch)
            outputs.append(keras.ops.convert_to_numpy(self.predict_on_batch(batch)))
        return np.concatenate(outputs)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits, "norm_layers": self.norm_layers})
        return config
