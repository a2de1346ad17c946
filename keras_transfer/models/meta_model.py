"""`MetaModel`: MAML, first-order MAML, Meta-SGD, MAML++ rates and ANIL over any Keras model."""

import inspect

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import compute_metrics_nan_unless_finite
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._task_signature import declared_input
from keras_transfer.models._task_signature import recorded_input_shapes
from keras_transfer.ops import maml as maml_ops
from keras_transfer.utils import validation

_TASK_KEYS = ("support_x", "support_y", "query_x")
_RATE_MODES = (None, "per_parameter", "per_step")


def unpack_tasks(x):
    """`(support_x, support_y, query_x)` from a dict with those keys or a 3-tuple/list."""
    if isinstance(x, dict):
        missing = [k for k in _TASK_KEYS if k not in x]
        if missing:
            raise ValueError(
                "`x` must be a dict with keys "
                f"{list(_TASK_KEYS)} (a meta-batch of tasks). Received: x with keys {sorted(x)}"
            )
        return x["support_x"], x["support_y"], x["query_x"]
    if isinstance(x, (tuple, list)) and len(x) == 3:
        return tuple(x)
    raise ValueError(
        "`x` must be a meta-batch of tasks: a dict {'support_x', 'support_y', 'query_x'} or a "
        "tuple (support_x, support_y, query_x) with shapes [tasks, shots, ...], and `y` the "
        f"query targets [tasks, queries, ...]. Received: x of type {type(x).__name__}"
    )


def _check_task_shapes(support_x, support_y, query_x, query_y=None):
    sx, sy, qx = support_x.shape, support_y.shape, query_x.shape
    if len(sx) < 3 or len(qx) < 3:
        raise ValueError(
            "`support_x` and `query_x` must have shape [tasks, examples, *features] (rank >= 3). "
            f"Received: support_x.shape={tuple(sx)}, query_x.shape={tuple(qx)}. "
            "Add the task axis (x[None]) for a single task, or a feature axis (x[..., None])."
        )
    if tuple(sx[2:]) != tuple(qx[2:]):
        raise ValueError(
            "`query_x` must have the same feature shape as `support_x`. Received: "
            f"support_x.shape={tuple(sx)} (features {tuple(sx[2:])}), query_x.shape={tuple(qx)} "
            f"(features {tuple(qx[2:])})."
        )
    if len(sy) < 2 or (sx[0] is not None and sy[0] is not None and sx[0] != sy[0]) or (
        sx[1] is not None and sy[1] is not None and sx[1] != sy[1]
    ):
        raise ValueError(
            "`support_y` must have shape [tasks, shots, ...] matching support_x's first two axes. "
            f"Received: support_x.shape={tuple(sx)}, support_y.shape={tuple(sy)}"
        )
    if query_y is not None:
        qy = query_y.shape
        if len(qy) < 2 or (qx[1] is not None and qy[1] is not None and qx[1] != qy[1]):
            raise ValueError(
                "`y` (query targets) must have shape [tasks, queries, ...] matching query_x's "
                f"first two axes. Received: query_x.shape={tuple(qx)}, y.shape={tuple(qy)}"
            )


def _as_tensor(a, keep_float64=False):
    """A tensor of `a`; NumPy float64 becomes float32 unless the model computes in float64."""
    if tf.is_tensor(a):
        return a
    a = np.asarray(a)
    return ops.convert_to_tensor(a.astype("float32") if a.dtype == np.float64 and not keep_float64 else a)


def _call_kwargs(model, training):
    """`{"training": training}` if `model.call` accepts it (subclassed models may not)."""
    params = inspect.signature(model.call).parameters
    if "training" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return {"training": training}
    return {}


def _float_dtype(t):
    """float64 stays float64 (gradient checks); everything else computes losses in float32."""
    return "float64" if t.dtype == tf.float64 else "float32"


def _exact_constant(value):
    """Initializer filling `value` directly in the weight's dtype.

    `keras.initializers.Constant` rounds a Python float through float32 first
    (0.3 becomes 0.30000001192 in a float64 weight).
    """

    def initializer(shape, dtype=None):
        return ops.full(shape, value, dtype=dtype)

    return initializer


def _keras_loss_replicas(loss):
    """What a compiled Keras loss divides by under tf.distribute: the replica count for the
    mean reductions (`keras.losses.Loss`), 1 for "sum"."""
    reduction = getattr(loss, "reduction", "sum_over_batch_size")
    if reduction not in ("sum_over_batch_size", "mean", "mean_with_sample_weight", "auto", None):
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def _merge_tasks(t):
    return ops.reshape(t, (-1,) + tuple(t.shape[2:]))


@keras.saving.register_keras_serializable(package="keras_transfer")
class MetaModel(keras.Model):
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
            (gradient ascent on those weights): a good single step, but repeating it diverges
            (sinusoids, measured: MSE 0.44 / 0.38 / 1.06 / 5e29 after 1 / 2 / 3 / 5 steps);
            with `(0.0, 1.0)` the same run gives 0.44 / 0.23 / 0.18 / 0.15 and 0.13 at 10 steps.
        vectorize: use the batched per-task-weights path when the model qualifies
            (a chain whose adapted layers are `Dense`); False forces the loop path.
        steps_per_batch: meta-batches per element of the training data. With `S > 1`, each
            element holds `S` meta-batches stacked on a leading axis
            (`dataset.batch(S, drop_remainder=True)`) and `fit` runs `S` optimizer steps per
            element inside one compiled call: 2-3x faster for small models, where
            TensorFlow's per-call cost dominates. Metrics are those of the last meta-batch.
    """

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
        if not isinstance(model, keras.Model):
            raise ValueError(
                "`model` must be a keras.Model. Received: model of type "
                f"{type(model).__name__}"
            )
        if not model.built:
            raise ValueError(
                "`model` must be built (give it an `Input` or call it on a batch first). "
                f"Received: model={model.name!r} with no weights yet"
            )
        if not model.trainable_variables:
            raise ValueError(
                "`model` must have trainable weights to adapt. Received: model="
                f"{model.name!r} with 0 trainable weights. Unfreeze it (model.trainable = True)."
            )
        self.inner_steps = validation.check_positive_int(
            "inner_steps", inner_steps, "Use at least one inner gradient step."
        )
        self.inner_learning_rate = validation.check_positive_float(
            "inner_learning_rate", inner_learning_rate
        )
        if not isinstance(first_order, bool):
            raise ValueError(
                f"`first_order` must be True or False. Received: first_order={first_order!r}"
            )
        self.first_order = first_order
        validation.check_one_of("learn_inner_rates", learn_inner_rates, list(_RATE_MODES))
        self.learn_inner_rates = learn_inner_rates
        self.inner_rate_bounds = self._check_bounds(inner_rate_bounds, learn_inner_rates)
        self.model = model
        self.adapt_layers = None if adapt_layers is None else list(adapt_layers)
        self._adapted_indices = self._resolve_adapted(model, self.adapt_layers)
        # Exact moments for BatchNorm; batch statistics per task also at evaluation.
        self._has_batch_norm = maml_ops.patch_batch_normalization(model) > 0

        self.inner_rates = []
        if learn_inner_rates is not None:
            variables = model.trainable_variables
            for i in self._adapted_indices:
                v = variables[i]
                shape = tuple(v.shape) if learn_inner_rates == "per_parameter" else (self.inner_steps,)
                name = v.path.replace("/", "_") + "_inner_rate"
                self.inner_rates.append(
                    self.add_weight(
                        shape=shape,
                        initializer=_exact_constant(self.inner_learning_rate),
                        name=name,
                        dtype=v.dtype,
                        trainable=True,
                    )
                )
        adapted = [model.trainable_variables[i] for i in self._adapted_indices]
        if not isinstance(vectorize, bool):
            raise ValueError(f"`vectorize` must be True or False. Received: vectorize={vectorize!r}")
        self.vectorize = vectorize
        self.steps_per_batch = validation.check_positive_int("steps_per_batch", steps_per_batch)
        self._plan = maml_ops.dense_chain_plan(model, adapted) if vectorize else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    # ---------------------------------------------------------------- setup
    @staticmethod
    def _check_bounds(bounds, learn_inner_rates):
        if bounds is None:
            return None
        ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2
        try:
            low, high = (float(b) for b in bounds) if ok else (None, None)
        except (TypeError, ValueError):
            ok = False
        if not ok or not np.isfinite([low, high]).all() or not low < high:
            raise ValueError(
                "`inner_rate_bounds` must be None or a pair (low, high) of floats with low < high. "
                f"Received: inner_rate_bounds={bounds!r}. Use e.g. (0.0, 1.0)."
            )
        if learn_inner_rates is None:
            raise ValueError(
                "`inner_rate_bounds` only applies to learned inner rates. Received: "
                f"inner_rate_bounds={bounds!r} with learn_inner_rates=None. Set "
                'learn_inner_rates="per_parameter" or "per_step", or drop inner_rate_bounds.'
            )
        return (low, high)

    @staticmethod
    def _resolve_adapted(model, adapt_layers):
        variables = model.trainable_variables
        if adapt_layers is None:
            return list(range(len(variables)))
        if isinstance(adapt_layers, str) or not adapt_layers:
            raise ValueError(
                "`adapt_layers` must be None or a non-empty list of layer names. "
                f"Received: adapt_layers={adapt_layers!r}"
            )
        by_name = {layer.name: layer for layer in maml_ops.iter_layers(model)}
        position = {id(v): i for i, v in enumerate(variables)}
        indices = []
        for name in adapt_layers:
            if name not in by_name:
                raise ValueError(
                    f"`adapt_layers` must name layers of the model. Received: {name!r}, "
                    f"available: {sorted(by_name)}"
                )
            owned = [position[id(v)] for v in by_name[name].trainable_weights if id(v) in position]
            if not owned:
                raise ValueError(
                    f"`adapt_layers` must name layers with trainable weights. Received: {name!r}, "
                    "which has none."
                )
            indices.extend(owned)
        return sorted(set(indices))

    @property
    def vectorized(self):
        """True when the meta-batch runs as batched matmuls (Dense chains)."""
        return self._plan is not None and self._mean_reduction()

    def _mean_reduction(self):
        loss = getattr(self, "loss", None)
        reduction = getattr(loss, "reduction", "sum_over_batch_size")
        return reduction in ("sum_over_batch_size", "mean", "auto", None)

    def compile(self, optimizer="adam", loss=None, jit_compile="auto", **kwargs):
        if jit_compile == "auto":
            # XLA pays off for the vectorised Dense path on CPU (3-4x); for conv models
            # it is much slower on CPU (DESIGN.md §4), so "auto" keeps Keras's choice.
            self.loss = loss
            dense_only = self._plan is not None and all(
                kind == "dense" or isinstance(layer, keras.layers.Dense) or not layer.weights
                for kind, layer, _ in self._plan
            )
            # Not under tf.distribute: XLA cannot reach a MirroredVariable's other copies
            # (Keras's own "auto" turns XLA off there too).
            distributed = getattr(self, "_distribute_strategy", None) is not None
            if dense_only and self._mean_reduction() and not distributed:
                jit_compile = True
        super().compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile, **kwargs)

    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        # As keras.Model's, which skips models (like this one) that override `compile`.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker] + [m for m in super().metrics if m.name != "loss"]

    # ------------------------------------------------------------ inner loop
    def _inner_loss(self, y_true, y_pred):
        owner = self
        loss_fn = getattr(self, "_compile_loss", None)
        if loss_fn is None:
            # Not compiled itself (adapting a model compiled on its own): use the model's loss.
            owner = self.model
            loss_fn = getattr(self.model, "_compile_loss", None)
        if loss_fn is None:
            raise ValueError(
                "`MetaModel` must be compiled with a `loss` (the inner and outer loss). "
                "Received: loss=None. Call compile(optimizer=..., loss=...)."
            )
        dtype = _float_dtype(y_pred)
        loss = ops.cast(loss_fn(y_true, ops.cast(y_pred, dtype)), dtype)
        # Keras losses divide by the replica count under tf.distribute (for the outer,
        # summed gradient); a task's inner step must not depend on it.
        return loss * ops.cast(_keras_loss_replicas(getattr(owner, "loss", None)), dtype)

    def _rates(self, step):
        if not self.inner_rates:
            return self.inner_learning_rate
        if self.learn_inner_rates == "per_parameter":
            rates = [r.value for r in self.inner_rates]
        else:
            # MAML++ rates: beyond the meta-trained steps, keep using the last step's rate.
            step = min(step, self.inner_steps - 1)
            rates = [r.value[step] for r in self.inner_rates]
        if self.inner_rate_bounds is not None:
            low, high = self.inner_rate_bounds
            rates = [ops.clip(r, low, high) for r in rates]
        return rates

    def _adapt_vectorized(self, theta, support_x, support_y, steps, first_order, training):
        num_tasks = ops.shape(support_x)[0]
        tiled = [
            tf.broadcast_to(theta[i][None], tf.concat([[num_tasks], tf.shape(theta[i])], 0))
            for i in self._adapted_indices
        ]

        def forward(fast, x):
            values = list(theta)
            for i, f in zip(self._adapted_indices, fast):
                values[i] = f
            return maml_ops.dense_chain_forward(self._plan, values, x, training=training)

        def loss_fn(y, pred):
            # Sum of the per-task mean losses: each task's weights get its own gradient.
            loss = self._inner_loss(_merge_tasks(y), _merge_tasks(pred))
            return ops.cast(num_tasks, loss.dtype) * loss

        fast = maml_ops.maml_inner_loop(
            forward, loss_fn, tiled, support_x, support_y, steps, self._rates, first_order
        )
        return forward, fast

    def _task_values(self, theta, fast):
        values = list(theta)
        for i, f in zip(self._adapted_indices, fast):
            values[i] = f
        return values

    def _adapt_one(self, theta, non_trainable, support_x, support_y, steps, first_order, training):
        def forward(fast, x):
            out, _ = self.model.stateless_call(
                self._task_values(theta, fast), non_trainable, x, **_call_kwargs(self.model, training)
            )
            return out

        adapted = [theta[i] for i in self._adapted_indices]
        fast = maml_ops.maml_inner_loop(
            forward, self._inner_loss, adapted, support_x, support_y, steps, self._rates,
            first_order,
        )
        return forward, fast

    def adapt_and_predict(self, support_x, support_y, query_x, steps=None, training=False):
        """Adapts to every task of the meta-batch and predicts its query set: `[T, Q, ...]`.

        Differentiable (second order unless `first_order`) with respect to the
        meta-parameters when called inside a `tf.GradientTape`.
        """
        steps = self.inner_steps if steps is None else validation.check_positive_int(
            "steps", steps, "Use at least one inner gradient step."
        )
        _check_task_shapes(support_x, support_y, query_x)
        support_x = ops.convert_to_tensor(support_x)
        query_x = ops.convert_to_tensor(query_x)
        support_y = ops.convert_to_tensor(support_y)
        theta = [v.value for v in self.model.trainable_variables]
        if self.vectorized:
            forward, fast = self._adapt_vectorized(
                theta, support_x, support_y, steps, self.first_order, training
            )
            return forward(fast, query_x)
        non_trainable = [v.value for v in self.model.non_trainable_variables]

        def one_task(args):
            sx, sy, qx = args
            forward, fast = self._adapt_one(
                theta, non_trainable, sx, sy, steps, self.first_order, training
            )
            return forward(fast, qx)

        num_tasks = support_x.shape[0]
        if num_tasks is not None and num_tasks <= 32:  # unrolled: fastest for small meta-batches
            outputs = [one_task((support_x[t], support_y[t], query_x[t])) for t in range(num_tasks)]
            return ops.stack([ops.cast(o, _float_dtype(o)) for o in outputs], axis=0)
        dtype = _float_dtype(query_x) if self.model.variable_dtype == "float64" else "float32"
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

    # ------------------------------------------------------------- keras API
    def call(self, inputs, training=False):
        """Plain tensor: the meta-learned model. Task dict/tuple: adapted query predictions."""
        if isinstance(inputs, dict) or (isinstance(inputs, (tuple, list)) and len(inputs) == 3):
            support_x, support_y, query_x = unpack_tasks(inputs)
            return float32_outputs(self.adapt_and_predict(
                support_x, support_y, query_x, training=bool(training) or self._has_batch_norm
            ))
        return float32_outputs(self.model(inputs, training=training))

    def _query_step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        support_x, support_y, query_x = unpack_tasks(x)
        if y is None:
            raise ValueError(
                "`y` must hold the query targets [tasks, queries, ...]. Received: y=None"
            )
        _check_task_shapes(support_x, support_y, query_x, y)
        pred = self.adapt_and_predict(
            support_x, support_y, query_x, training=training or self._has_batch_norm
        )
        y_flat, pred_flat = _merge_tasks(y), _merge_tasks(ops.cast(pred, _float_dtype(pred)))
        sw = None if sample_weight is None else _merge_tasks(sample_weight)
        loss = self.compute_loss(x=None, y=y_flat, y_pred=pred_flat, sample_weight=sw)
        return loss, y_flat, pred_flat, sw

    def _one_meta_step(self, data):
        with tf.GradientTape() as tape:
            loss, y, pred, sw = self._query_step(data, training=True)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        # The compiled loss is this replica's share (divided by the replica count).
        self.loss_tracker.update_state(loss * ops.cast(_keras_loss_replicas(self.loss), loss.dtype))
        return y, pred, sw

    def train_step(self, data):
        if self.steps_per_batch == 1:
            y, pred, sw = self._one_meta_step(data)
            return self.compute_metrics(None, y, pred, sw)
        # `steps_per_batch` meta-batches stacked on a leading axis: that many optimizer
        # steps in one compiled call (a while loop inside XLA), so the per-call dispatch
        # cost of TensorFlow is paid once for all of them.
        data = tuple(data) if isinstance(data, list) else data
        leading = tf.nest.flatten(data)[0]
        if leading.shape[0] is not None and leading.shape[0] != self.steps_per_batch:
            raise ValueError(
                f"`steps_per_batch={self.steps_per_batch}` needs that many meta-batches stacked "
                f"on a leading axis (dataset.batch({self.steps_per_batch}, drop_remainder=True)). "
                f"Received: leading axis of size {leading.shape[0]}"
            )

        def body(i):
            self._one_meta_step(tf.nest.map_structure(lambda t: t[i], data))
            return (i + 1,)

        tf.while_loop(lambda i: i < self.steps_per_batch, body, (tf.constant(0),))
        last = tf.nest.map_structure(lambda t: t[-1], data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(last)
        support_x, support_y, query_x = unpack_tasks(x)
        pred = self.adapt_and_predict(support_x, support_y, query_x, training=True)
        sw = None if sample_weight is None else _merge_tasks(sample_weight)
        return self.compute_metrics(None, _merge_tasks(y), _merge_tasks(ops.cast(pred, _float_dtype(pred))), sw)

    def test_step(self, data):
        loss, y, pred, sw = self._query_step(data, training=False)
        self.loss_tracker.update_state(loss * ops.cast(_keras_loss_replicas(self.loss), loss.dtype))
        return self.compute_metrics(None, y, pred, sw)

    # ----------------------------------------------------------------- adapt
    def adapt(self, support_x, support_y, steps=None, learning_rate=None):
        """Adapts to ONE task and returns a plain `keras.Model` with the adapted weights.

        Args:
            support_x: `[K, ...]` support inputs of one task.
            support_y: `[K, ...]` support targets.
            steps: inner steps (default `inner_steps`; more steps than during
                meta-training is common at test time).
            learning_rate: overrides the (learned) inner rates with one float.

        The returned model is a copy of the wrapped model (`predict`, `.keras`, `export()`
        work as usual). Its BatchNorm moving statistics are the support-set statistics.
        """
        steps = self.inner_steps if steps is None else validation.check_positive_int(
            "steps", steps, "Use at least one inner gradient step."
        )
        if learning_rate is not None:
            validation.check_positive_float("learning_rate", learning_rate)
        if not tf.is_tensor(support_x):
            validation.check_finite(support_x, "support_x")
        if not tf.is_tensor(support_y):
            validation.check_finite(support_y, "support_y")
        keep = any(v.dtype == "float64" for v in self.model.trainable_variables)
        support_x, support_y = _as_tensor(support_x, keep), _as_tensor(support_y, keep)
        if len(support_x.shape) < 2 or support_x.shape[0] != support_y.shape[0]:
            raise ValueError(
                "`support_x` and `support_y` must be one task's examples with the same first "
                f"axis. Received: support_x.shape={tuple(support_x.shape)}, "
                f"support_y.shape={tuple(support_y.shape)}"
            )
        theta = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        rates = self._rates if learning_rate is None else (lambda step: learning_rate)

        def forward(fast, x):
            out, _ = self.model.stateless_call(
                self._task_values(theta, fast), non_trainable, x, **_call_kwargs(self.model, True)
            )
            return out

        adapted = [theta[i] for i in self._adapted_indices]
        fast = maml_ops.maml_inner_loop(
            forward, self._inner_loss, adapted, support_x, support_y, steps, rates, True
        )
        values = self._task_values(theta, fast)
        # Support-set statistics for BatchNorm: a training-mode pass updates the moving
        # statistics to m * old + (1 - m) * batch; solve for the batch statistics.
        _, updated = self.model.stateless_call(
            values, non_trainable, support_x, **_call_kwargs(self.model, True)
        )
        new_non_trainable = list(non_trainable)
        bn_vars = {}
        for layer in maml_ops.iter_layers(self.model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum < 1:
                bn_vars[id(layer.moving_mean)] = layer.momentum
                bn_vars[id(layer.moving_variance)] = layer.momentum
        for j, v in enumerate(self.model.non_trainable_variables):
            if id(v) in bn_vars:
                m = bn_vars[id(v)]
                new_non_trainable[j] = (updated[j] - m * non_trainable[j]) / (1.0 - m)

        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(self.model))
        if not clone.built:
            clone.build_from_config(self.model.get_build_config())
        for v, value in zip(clone.trainable_variables, values):
            v.assign(value)
        for v, value in zip(clone.non_trainable_variables, new_non_trainable):
            v.assign(value)
        return clone

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Exports the meta-learned initialisation (the wrapped model's inference path).

        Works straight after `fit` and after `.keras` reload, also for a subclassed
        wrapped model (its input shape comes from the call that built it). A
        task-specific model comes from `adapt(...)`, which returns a plain model with its
        own `export()`.
        """
        if verbose is not None:
            kwargs["verbose"] = verbose
        if input_signature is None:
            input_signature = self._wrapped_input_signature()
        if input_signature is not None:
            kwargs["input_signature"] = input_signature
        return self.model.export(filepath, format=format, **kwargs)

    def _wrapped_input_signature(self):
        """None for a model with a declared `Input` (Keras exports it as is); otherwise a
        spec from the shape the wrapped model was built with."""
        shape, _ = declared_input(self.model)
        if shape is not None:
            return None
        recorded = recorded_input_shapes(self.model)
        if not (isinstance(recorded, (list, tuple)) and recorded
                and all(d is None or isinstance(d, int) for d in recorded)):
            return None  # Keras's own message if it cannot export either
        dtype = self.model.trainable_variables[0].dtype
        return [keras.InputSpec(shape=(None,) + tuple(recorded[1:]), dtype=dtype)]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Compiled metrics; NaN for all of them once predictions or weights are not finite."""
        return compute_metrics_nan_unless_finite(
            self, super().compute_metrics, x, y, y_pred, sample_weight)

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.model),
                "inner_steps": self.inner_steps,
                "inner_learning_rate": self.inner_learning_rate,
                "first_order": self.first_order,
                "learn_inner_rates": self.learn_inner_rates,
                "adapt_layers": self.adapt_layers,
                "vectorize": self.vectorize,
                "steps_per_batch": self.steps_per_batch,
                "inner_rate_bounds": None if self.inner_rate_bounds is None
                else list(self.inner_rate_bounds),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
