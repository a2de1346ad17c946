"""`MetaModel`: MAML, first-order MAML, Meta-SGD, MAML++ rates and ANIL over any Keras model."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._meta_batch import check_stacked_meta_batches
from keras_transfer.models._meta_batch import check_task_shapes
from keras_transfer.models._meta_batch import is_meta_batch
from keras_transfer.models._meta_batch import merge_tasks
from keras_transfer.models._meta_batch import one_task_support
from keras_transfer.models._meta_batch import unpack_tasks
from keras_transfer.models._meta_model_args import check_bool
from keras_transfer.models._meta_model_args import check_model
from keras_transfer.models._meta_model_args import check_rate_bounds
from keras_transfer.models._meta_model_args import check_steps
from keras_transfer.models._meta_model_args import exact_constant
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._task_signature import built_input_signature
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.ops import maml as maml_ops
from keras_transfer.ops import maml_tasks
from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation
from keras_transfer.utils.distributed import keras_loss_replicas

_RATE_MODES = (None, "per_parameter", "per_step")


@keras.saving.register_keras_serializable(package="keras_transfer")
class MetaModel(TrainStepModel):
    """Model-agnostic meta-learning (MAML) around any built Keras model.

    `fit` consumes meta-batches of tasks: `x` is a dict
    `{"support_x": [T, K, ...], "support_y": [T, K, ...], "query_x": [T, Q, ...]}` (or the
    tuple `(support_x, support_y, query_x)`) and `y` holds the query targets `[T, Q, ...]`;
    the batch axis is the task axis (`batch_size` = meta-batch size). For every task the
    wrapped model is adapted on its support set by `inner_steps` SGD steps
    `phi = theta - alpha * grad L(theta; support)` and the compiled loss of `phi` on the query
    set, averaged over tasks, is minimised with the compiled optimizer. The compiled loss is
    also the inner loss (per task, mean over the support examples); compiled metrics are
    computed on the query predictions.

    Gradients are exact second order by default (nested `tf.GradientTape`s over
    `stateless_call`; fast weights are never written into variables). Tasks of a
    meta-batch are processed together: a chain of `Dense` layers (plus weightless or
    non-adapted layers) runs with per-task weights as batched matmuls ("vectorized"
    path); any other model runs the same maths per task in a `tf.map_fn` (or an unrolled
    loop when the meta-batch size is static) ("loop" path). With the vectorised path,
    `compile(jit_compile="auto")` turns XLA on (it is several times faster on CPU).

    BatchNorm: every `BatchNormalization` inside the model is switched to exact moments
    (see `keras_transfer.ops.maml.exact_moments`) so second-order gradients are right.
    Statistics policy: during meta-training and task prediction, each task uses its own
    batch statistics (support and query sets are each normalised with their own, the
    transductive setting of Finn et al.); moving statistics are not updated by
    meta-training. `adapt()` writes the support-set statistics of the adapted weights into
    the moving mean/variance of the returned model, so it predicts on single examples.

    Args:
        model: a built Keras model (functional, sequential or subclassed).
        inner_steps: inner SGD steps during meta-training (and `adapt` by default).
        inner_learning_rate: alpha (initial value when the rates are learned).
        first_order: first-order MAML (drop second derivatives).
        learn_inner_rates: None (fixed alpha), "per_parameter" (Meta-SGD: one rate per
            weight entry) or "per_step" (MAML++: one rate per weight tensor and step).
        adapt_layers: None (adapt every trainable weight) or names of the layers whose
            weights are adapted in the inner loop (ANIL: just the head).
        inner_rate_bounds: None (unconstrained learned rates, as in the Meta-SGD paper) or
            `(low, high)`: learned rates are clipped to that range wherever they are used.
            `(0.0, 1.0)` keeps every rate a descent step. Unconstrained Meta-SGD rates
            meta-trained for one step come out up to ~1 in size with ~40 % of them negative
            (gradient ascent on those weights): a good single step that diverges when
            repeated (sinusoids: MSE 5e29 after 5 steps; 0.15 with `(0.0, 1.0)`).
        vectorize: use the batched per-task-weights path when the model qualifies
            (a chain whose adapted layers are `Dense`); False forces the loop path.
        steps_per_batch: meta-batches per element of the training data. With `S > 1`, each
            element holds `S` meta-batches stacked on a leading axis
            (`dataset.batch(S, drop_remainder=True)`) and `fit` runs `S` optimizer steps per
            element inside one compiled call: 2-3x faster for small models, where
            TensorFlow's per-call cost dominates. Metrics are those of the last meta-batch.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a meta-batch `{"support_x", "support_y", "query_x"}` (or that tuple): the
            adapted query predictions; or a plain batch: the meta-learned model's output.
        training: the wrapped model's training mode (see `adapt_and_predict`).

    Raises:
        ValueError: if `model` is not a built `keras.Model`, a step count or rate is not
            positive, a flag is not a bool, or `learn_inner_rates` / `inner_rate_bounds` is invalid.

    Reference:
        Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks"; Li et al., 2017, "Meta-SGD"; Antoniou et al., 2019, "How to train your
        MAML" (MAML++); Raghu et al., 2020, "Rapid Learning or Feature Reuse?" (ANIL).

    Example:

    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    >>> model = keras_transfer.models.MetaModel(net, inner_steps=1, inner_learning_rate=0.01)
    >>> model.compile(optimizer="adam", loss="mse")
    >>> tasks = {"support_x": np.zeros((2, 5, 1), "float32"),
    ...          "support_y": np.zeros((2, 5, 1), "float32"), "query_x": np.zeros((2, 3, 1), "float32")}
    >>> tuple(model(tasks).shape)  # [tasks, queries, outputs]
    (2, 3, 1)
    """

    keras_object_args = ("model",)

    def __init__(
        self,
        model,
        inner_steps=1,
        inner_learning_rate=0.01,
        first_order=False,
        learn_inner_rates=None,
        adapt_layers=None,
        vectorize=True,
        steps_per_batch=1,
        inner_rate_bounds=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_model(model)
        self.inner_steps = check_steps("inner_steps", inner_steps)
        self.inner_learning_rate = validation.check_positive_float("inner_learning_rate", inner_learning_rate)
        self.first_order = check_bool("first_order", first_order)
        validation.check_one_of("learn_inner_rates", learn_inner_rates, list(_RATE_MODES))
        self.learn_inner_rates = learn_inner_rates
        self.inner_rate_bounds = check_rate_bounds(inner_rate_bounds, learn_inner_rates)
        self.model = model
        self.adapt_layers = None if adapt_layers is None else list(adapt_layers)
        self._adapted_indices = maml_tasks.adapted_weight_indices(model, self.adapt_layers)
        # Exact moments for BatchNorm; batch statistics per task also at evaluation.
        self._has_batch_norm = maml_ops.patch_batch_normalization(model) > 0
        adapted = [model.trainable_variables[i] for i in self._adapted_indices]
        self.inner_rates = [] if learn_inner_rates is None else [self._add_inner_rate(v) for v in adapted]
        self.vectorize = check_bool("vectorize", vectorize)
        self.steps_per_batch = validation.check_positive_int("steps_per_batch", steps_per_batch)
        self._plan = maml_ops.dense_chain_plan(model, adapted) if vectorize else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    def _add_inner_rate(self, variable):
        """A learned inner rate for `variable`: per entry (Meta-SGD) or per step (MAML++)."""
        per_entry = self.learn_inner_rates == "per_parameter"
        return self.add_weight(
            shape=tuple(variable.shape) if per_entry else (self.inner_steps,),
            initializer=exact_constant(self.inner_learning_rate),
            name=variable.path.replace("/", "_") + "_inner_rate",
            dtype=variable.dtype,
            trainable=True,
        )

    # ----------------------------------------------------------------- adapt
    def adapt(self, support_x, support_y, steps=None, learning_rate=None):
        """Adapts to ONE task and returns a plain `keras.Model` with the adapted weights.

        Args:
            support_x: `[K, ...]` support inputs of one task.
            support_y: `[K, ...]` support targets.
            steps: inner steps (default `inner_steps`; more steps than during
                meta-training is common at test time).
            learning_rate: overrides the (learned) inner rates with one float.

        Returns:
            a copy of the wrapped model (`predict`, `.keras`, `export()` work as
            usual) with the adapted weights; its BatchNorm moving statistics are the
            support-set statistics.

        Raises:
            ValueError: if `steps` or `learning_rate` is not positive, or the support
                set is not one task's finite examples with matching first axes.
        """
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        if learning_rate is not None:
            validation.check_positive_float("learning_rate", learning_rate)
        keep = any(v.dtype == "float64" for v in self.model.trainable_variables)
        support_x, support_y = one_task_support(support_x, support_y, keep)
        theta = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        forward = maml_tasks.stateless_forward(self.model, theta, non_trainable, self._adapted_indices, training=True)
        rates = self._rates if learning_rate is None else (lambda step: learning_rate)
        fast = maml_ops.maml_inner_loop(
            forward,
            self._inner_loss,
            self._adapted(theta),
            support_x,
            support_y,
            steps,
            rates,
            True,
        )
        values = maml_tasks.with_fast_weights(theta, self._adapted_indices, fast)
        statistics = maml_tasks.batch_norm_statistics(self.model, values, non_trainable, support_x)
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(self.model))
        if not clone.built:
            clone.build_from_config(self.model.get_build_config())
        for v, value in zip(clone.trainable_variables, values):
            v.assign(value)
        for v, value in zip(clone.non_trainable_variables, statistics):
            v.assign(value)
        return clone

    def adapt_and_predict(self, support_x, support_y, query_x, steps=None, training=False):
        """Adapts to every task of the meta-batch and predicts its query set: `[T, Q, ...]`.

        Differentiable (second order unless `first_order`) with respect to the
        meta-parameters when called inside a `tf.GradientTape`.

        Args:
            support_x: `[T, K, ...]` support inputs.
            support_y: `[T, K, ...]` support targets.
            query_x: `[T, Q, ...]` query inputs.
            steps: inner steps (default `inner_steps`).
            training: the wrapped model's training mode in the inner and query passes.

        Returns:
            `[T, Q, ...]` predictions of each task's adapted model on its query set.

        Raises:
            ValueError: if `steps` is not positive or the shapes do not form a meta-batch.
        """
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        check_task_shapes(support_x, support_y, query_x)
        support_x = ops.convert_to_tensor(support_x)
        query_x = ops.convert_to_tensor(query_x)
        support_y = ops.convert_to_tensor(support_y)
        theta = [v.value for v in self.model.trainable_variables]
        if self.vectorized:
            num_tasks = ops.shape(support_x)[0]
            forward = maml_tasks.vectorized_forward(self._plan, theta, self._adapted_indices, training=training)
            fast = maml_ops.maml_inner_loop(
                forward,
                maml_tasks.task_summed_loss(self._inner_loss, num_tasks),
                maml_tasks.tile_per_task(self._adapted(theta), num_tasks),
                support_x,
                support_y,
                steps,
                self._rates,
                self.first_order,
            )
            return forward(fast, query_x)
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        forward = maml_tasks.stateless_forward(
            self.model, theta, non_trainable, self._adapted_indices, training=training
        )

        def one_task(args):
            sx, sy, qx = args
            fast = maml_ops.maml_inner_loop(
                forward,
                self._inner_loss,
                self._adapted(theta),
                sx,
                sy,
                steps,
                self._rates,
                self.first_order,
            )
            return forward(fast, qx)

        return self._map_tasks(one_task, support_x, support_y, query_x)

    def _map_tasks(self, one_task, support_x, support_y, query_x):
        """`one_task` over the task axis: unrolled when small and static, else `tf.map_fn`."""
        num_tasks = support_x.shape[0]
        if num_tasks is not None and num_tasks <= 32:  # unrolled: fastest for small meta-batches
            outputs = [one_task((support_x[t], support_y[t], query_x[t])) for t in range(num_tasks)]
            return ops.stack([ops.cast(o, compute_dtype(o)) for o in outputs], axis=0)
        dtype = compute_dtype(query_x) if self.model.variable_dtype == "float64" else "float32"
        try:
            out_shape = self.model.compute_output_shape((query_x.shape[1],) + tuple(query_x.shape[2:]))
            spec = tf.TensorSpec(tuple(out_shape), dtype)
        except Exception:  # subclassed models without compute_output_shape
            spec = tf.TensorSpec(None, dtype)
        return tf.map_fn(
            lambda args: ops.cast(one_task(args), dtype),
            (support_x, support_y, query_x),
            fn_output_signature=spec,
        )

    def _adapted(self, theta):
        return [theta[i] for i in self._adapted_indices]

    @property
    def vectorized(self):
        """True when the meta-batch runs as batched matmuls (Dense chains)."""
        return self._plan is not None and self._mean_reduction()

    def _mean_reduction(self):
        loss = getattr(self, "loss", None)
        reduction = getattr(loss, "reduction", "sum_over_batch_size")
        return reduction in ("sum_over_batch_size", "mean", "auto", None)

    # ------------------------------------------------------------ inner loop
    def _inner_loss(self, y_true, y_pred):
        owner = self
        loss_fn = model_graph.compiled_loss(self)
        if loss_fn is None:
            # Not compiled itself (adapting a model compiled on its own): use the model's loss.
            owner = self.model
            loss_fn = model_graph.compiled_loss(self.model)
        if loss_fn is None:
            raise ValueError(
                "`MetaModel` must be compiled with a `loss` (the inner and outer loss). "
                "Received: loss=None. Call compile(optimizer=..., loss=...)."
            )
        dtype = compute_dtype(y_pred)
        loss = ops.cast(loss_fn(y_true, ops.cast(y_pred, dtype)), dtype)
        # Keras losses divide by the replica count under tf.distribute (for the outer,
        # summed gradient); a task's inner step must not depend on it.
        return loss * ops.cast(keras_loss_replicas(getattr(owner, "loss", None)), dtype)

    def _rates(self, step):
        if not self.inner_rates:
            return self.inner_learning_rate
        return maml_tasks.inner_rates_at_step(
            [r.value for r in self.inner_rates],
            step=None if self.learn_inner_rates == "per_parameter" else step,
            bounds=self.inner_rate_bounds,
        )

    # ------------------------------------------------------------- keras API
    def call(self, inputs, training=False):
        """Plain tensor: the meta-learned model. Task dict/tuple: adapted query predictions."""
        if is_meta_batch(inputs):
            support_x, support_y, query_x = unpack_tasks(inputs)
            return float32_outputs(
                self.adapt_and_predict(support_x, support_y, query_x, training=bool(training) or self._has_batch_norm)
            )
        return float32_outputs(self.model(inputs, training=training))

    def train_step(self, data):
        if self.steps_per_batch == 1:
            y, pred, sw = self._one_meta_step(data)
            return self.compute_metrics(None, y, pred, sw)
        # `steps_per_batch` meta-batches stacked on a leading axis: that many optimizer
        # steps in one compiled call (a while loop inside XLA), so the per-call dispatch
        # cost of TensorFlow is paid once for all of them.
        data = check_stacked_meta_batches(data, self.steps_per_batch)

        def body(i):
            self._one_meta_step(tf.nest.map_structure(lambda t: t[i], data))
            return (i + 1,)

        tf.while_loop(lambda i: i < self.steps_per_batch, body, (tf.constant(0),))
        last = tf.nest.map_structure(lambda t: t[-1], data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(last)
        support_x, support_y, query_x = unpack_tasks(x)
        pred = self.adapt_and_predict(support_x, support_y, query_x, training=True)
        sw = None if sample_weight is None else merge_tasks(sample_weight)
        return self.compute_metrics(None, merge_tasks(y), merge_tasks(ops.cast(pred, compute_dtype(pred))), sw)

    def _one_meta_step(self, data):
        with tf.GradientTape() as tape:
            loss, y, pred, sw = self._query_step(data, training=True)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        # The compiled loss is this replica's share (divided by the replica count).
        self.loss_tracker.update_state(loss * ops.cast(keras_loss_replicas(self.loss), loss.dtype))
        return y, pred, sw

    def test_step(self, data):
        loss, y, pred, sw = self._query_step(data, training=False)
        self.loss_tracker.update_state(loss * ops.cast(keras_loss_replicas(self.loss), loss.dtype))
        return self.compute_metrics(None, y, pred, sw)

    def _query_step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        support_x, support_y, query_x = unpack_tasks(x)
        if y is None:
            raise ValueError("`y` must hold the query targets [tasks, queries, ...]. Received: y=None")
        check_task_shapes(support_x, support_y, query_x, y)
        pred = self.adapt_and_predict(support_x, support_y, query_x, training=training or self._has_batch_norm)
        y_flat, pred_flat = merge_tasks(y), merge_tasks(ops.cast(pred, compute_dtype(pred)))
        sw = None if sample_weight is None else merge_tasks(sample_weight)
        loss = self.compute_loss(x=None, y=y_flat, y_pred=pred_flat, sample_weight=sw)
        return loss, y_flat, pred_flat, sw

    # ------------------------------------------------------ compile, export
    def compile(self, optimizer="adam", loss=None, jit_compile="auto", **kwargs):
        if jit_compile == "auto":
            # XLA pays off for the vectorised Dense path on CPU (3-4x); for conv models
            # it is much slower on CPU (measured), so "auto" keeps Keras's choice.
            self.loss = loss
            dense_only = self._plan is not None and all(
                kind == "dense" or isinstance(layer, keras.layers.Dense) or not layer.weights
                for kind, layer, _ in self._plan
            )
            # Not under tf.distribute: XLA cannot reach a MirroredVariable's other copies
            # (Keras's own "auto" turns XLA off there too).
            distributed = model_graph.distribute_strategy(self) is not None
            if dense_only and self._mean_reduction() and not distributed:
                jit_compile = True
        super().compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile, **kwargs)

    @property
    def metrics(self):
        return [self.loss_tracker] + [m for m in super().metrics if m.name != "loss"]

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Exports the meta-learned initialisation (the wrapped model's inference path).

        Works straight after `fit` and after `.keras` reload, also for a subclassed
        wrapped model (its input shape comes from the call that built it). A
        task-specific model comes from `adapt(...)`, which returns a plain model with its
        own `export()`.
        """
        if verbose is not None:
            kwargs["verbose"] = verbose
        if input_signature is None:
            input_signature = built_input_signature(self.model)
        if input_signature is not None:
            kwargs["input_signature"] = input_signature
        return self.model.export(filepath, format=format, **kwargs)

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "inner_steps": self.inner_steps,
                "inner_learning_rate": self.inner_learning_rate,
                "first_order": self.first_order,
                "learn_inner_rates": self.learn_inner_rates,
                "adapt_layers": self.adapt_layers,
                "vectorize": self.vectorize,
                "steps_per_batch": self.steps_per_batch,
                "inner_rate_bounds": None if self.inner_rate_bounds is None else list(self.inner_rate_bounds),
            }
        )
        return config
