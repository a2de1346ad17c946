"""Multi-task learning: one shared trunk, one head per task, min over θ of Σ_i w_i L_i(θ)."""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.models._finite_logs import all_finite
from keras_transfer.models._finite_logs import model_state_is_finite
from keras_transfer.models._finite_logs import poison_metrics
from keras_transfer.models._multi_task import INPUT_KEYS
from keras_transfer.models._multi_task import build_heads
from keras_transfer.models._multi_task import check_arrays
from keras_transfer.models._multi_task import check_head_output
from keras_transfer.models._multi_task import check_trunk
from keras_transfer.models._multi_task import parse_loss_weights
from keras_transfer.models._multi_task import split_inputs
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._serving import float32_outputs
from keras_transfer.models._serving import input_spec_like
from keras_transfer.models._train_step_model import TrainStepModel


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiTaskModel(ExportsDeclaredInputs, TrainStepModel):
    """A shared trunk with one classification head per task, trained on mixed batches.

    Training minimises `Σ_i w_i L_i` over the tasks, where `L_i` is the mean
    cross-entropy of task `i`'s examples in the batch, computed by task `i`'s head
    only. Batches are `({"inputs": x, "task": task_ids}, y)` (or
    `((x, task_ids), y)`): `task_ids` is the position of each example's task in
    `heads`, and `y` its class id in that task's own label set. Build them with
    `keras_transfer.datasets.multi_task_dataset`, or pass arrays to
    `fit({"inputs": x, "task": task_ids}, y)`.

    - A task absent from a batch contributes 0 to the loss, and its head's weights
      (and its log-variance) are left exactly as they were, whatever the optimizer's
      momentum.
    - Task ids and labels are checked: NumPy arrays in `fit` / `evaluate` at once
      (ValueError), dataset batches in the graph (InvalidArgumentError; XLA, i.e.
      `jit_compile=True`, drops these graph checks).
    - Each head runs on the whole batch (static shapes); the loss and metrics read
      only the rows of its task. A head with batch statistics (BatchNormalization)
      would see the other tasks' rows: keep such layers in the trunk.
    - `loss_weights="uncertainty"` learns one log-variance `s_i = log σ_i²` per
      task (initialised at 0) and minimises the classification form of Kendall et
      al. (2018), eq. (10): `Σ_i exp(-s_i) L_i + s_i / 2` (that is, `L_i / σ_i² +
      log σ_i`). Its minimum over `s_i` is at `s_i = log(2 L_i)`.

    Logs: `loss` (the weighted total), and for each task `<task>_loss` (its mean
    cross-entropy, unweighted) and `<task>_accuracy`, averaged over the task's
    examples seen in the epoch (0 for a task that none of the epoch's batches held).
    A step whose predictions or updated weights are not finite logs NaN for all of
    them, so `keras.callbacks.TerminateOnNaN` stops at that batch.

    `call(x)` (and `predict`, `export()`) returns a dict task name -> class
    probabilities `(batch, classes_i)` of every head, for plain trunk inputs (the
    `{"inputs": x, "task": ...}` dict is accepted too, its task ids ignored). The
    exported `serve` / `serving_default` signature takes the trunk's input and
    returns that dict (one output per task, named after it).

    Args:
        trunk: a built Keras model with a declared input (`keras.Input`): inputs to
            shared features.
        heads: dict task name -> a Keras layer or model (features to class scores),
            or -> a number of classes (a `Dense(classes, "softmax")` head is
            built). The order of the dict is the order of the task ids. Names are
            letters, digits and underscores.
        loss_weights: "uniform" (every `w_i = 1`: the plain sum of the task losses),
            a dict task name -> non-negative weight (or a list in task order), or
            "uncertainty" (learned weights, Kendall et al. 2018).
        from_logits: whether the heads output logits (the softmax is then applied
            in `call`) or probabilities (the default, as the built heads do).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of trunk inputs, or `{"inputs": x, "task": task_ids}`.
        training: whether the networks run in training mode.

    Raises:
        ValueError: if `trunk` is not a built Keras model, `heads` is empty or holds
            a bad name, head or number of classes, a head does not output
            `(batch, classes)`, `loss_weights` is unknown, misses or adds a task,
            has the wrong length or a negative value, or `from_logits` is not a bool.

    Reference:
        Caruana, "Multitask Learning", Machine Learning 28, 1997. Kendall, Gal &
        Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
        Geometry and Semantics", CVPR 2018.

    Example:

    >>> trunk = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu")])
    >>> model = keras_transfer.models.MultiTaskModel(trunk, {"parity": 2, "digit": 5})
    >>> model.compile(optimizer="adam")
    >>> x = np.zeros((6, 4), "float32")
    >>> task = np.array([0, 0, 0, 1, 1, 1])  # parity, parity, parity, digit, digit, digit
    >>> y = np.array([0, 1, 0, 4, 2, 3])     # each in its own task's classes
    >>> history = model.fit({"inputs": x, "task": task}, y, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['digit_accuracy', 'digit_loss', 'loss', 'parity_accuracy', 'parity_loss']
    >>> [(name, p.shape) for name, p in model.predict(x, verbose=0).items()]
    [('parity', (6, 2)), ('digit', (6, 5))]
    """

    keras_object_args = ("trunk",)

    def __init__(self, trunk, heads, loss_weights="uniform", from_logits=False, **kwargs):
        super().__init__(**kwargs)
        self._trunk_input = check_trunk(trunk)
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be True or False. Received: from_logits={from_logits!r}")
        self.trunk = trunk
        self.heads = build_heads(heads)
        self.task_names = tuple(self.heads)
        self.from_logits = from_logits
        self.loss_weight_mode, self.fixed_loss_weights = parse_loss_weights(loss_weights, self.task_names)
        self.log_variances = None
        if self.loss_weight_mode == "uncertainty":
            self.log_variances = self.add_weight(
                shape=(len(self.task_names),), initializer="zeros", dtype="float32", name="log_variances"
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{n}_loss") for n in self.task_names]
        self.task_accuracy_trackers = [keras.metrics.Mean(name=f"{n}_accuracy") for n in self.task_names]
        self.build(tf.nest.map_structure(lambda t: tuple(t.shape), self._trunk_input))

    def build(self, input_shape):
        inputs = tf.nest.map_structure(lambda t: keras.KerasTensor(tuple(t.shape), dtype=t.dtype), self._trunk_input)
        features = self.trunk(inputs)
        self.num_classes = tuple(check_head_output(name, head(features)) for name, head in self.heads.items())
        self.built = True

    @property
    def loss_weights(self):
        """The `loss_weights` argument: "uncertainty" or a dict task name -> fixed weight."""
        if self.loss_weight_mode == "uncertainty":
            return "uncertainty"
        return dict(zip(self.task_names, self.fixed_loss_weights))

    # -------------------------------------------------------------- inference
    def _head_outputs(self, inputs, training):
        features = self.trunk(inputs, training=training)
        return {name: head(features, training=training) for name, head in self.heads.items()}

    def call(self, inputs, training=None):
        if isinstance(inputs, dict) and "inputs" in inputs and set(inputs) <= set(INPUT_KEYS):
            inputs = inputs["inputs"]
        outputs = float32_outputs(self._head_outputs(inputs, training))
        if self.from_logits:
            outputs = {name: ops.softmax(scores, axis=-1) for name, scores in outputs.items()}
        return outputs

    def serving_input_signature(self):
        """The input signature of `export()`.

        Returns:
            `[spec]`: the trunk's declared input (shape with any batch size, dtype).
        """
        return [tf.nest.map_structure(input_spec_like, self._trunk_input)]

    def export_per_task(self, filepath, verbose=False):
        """Exports a SavedModel with one serving signature per task, plus `serve` (all heads).

        The endpoint named after each task takes the trunk's input and returns
        `{task: class probabilities (batch, classes)}` of that task alone (the
        signature's output is named after the task); `serve` (also
        `serving_default`) returns the dict of all heads, as `export()` does.

        Args:
            filepath: the folder to write the SavedModel to.
            verbose: whether to print the exported variables.

        Returns:
            The `keras.export.ExportArchive` that was written.

        Example:

        >>> import tensorflow as tf
        >>> trunk = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
        >>> model = keras_transfer.models.MultiTaskModel(trunk, {"a": 2, "b": 5})
        >>> _ = model.export_per_task("per_task")
        >>> restored = tf.saved_model.load("per_task")
        >>> {name: tuple(p.shape) for name, p in restored.b(np.zeros((2, 3), "float32")).items()}
        {'b': (2, 5)}
        """
        specs = tf.nest.map_structure(
            lambda spec: tf.TensorSpec(spec.shape, spec.dtype), self.serving_input_signature()
        )
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", lambda inputs: self(inputs, training=False), input_signature=specs)
        for name in self.task_names:
            archive.add_endpoint(
                name,
                lambda inputs, name=name: {name: self(inputs, training=False)[name]},
                input_signature=specs,
            )
        archive.write_out(filepath, verbose=verbose)
        return archive

    # ------------------------------------------------------------------- loss
    def total_loss(self, task_losses, present=None, log_variances=None):
        """The weighted total `Σ_i w_i L_i` of per-task mean losses.

        Fixed weights: `Σ_i present_i w_i L_i`. Uncertainty weighting:
        `Σ_i present_i (exp(-s_i) L_i + s_i / 2)` (Kendall et al. 2018, eq. 10).
        A task that is not present contributes exactly 0 (and no gradient).

        Args:
            task_losses: `(tasks,)` tensor of per-task mean losses `L_i`.
            present: `(tasks,)` bools, whether each task has examples in the batch
                (default: all).
            log_variances: `(tasks,)` values of `s_i` to use instead of the model's
                own (uncertainty weighting only).

        Returns:
            A scalar tensor in the dtype of `task_losses`.

        Example:

        >>> trunk = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        >>> model = keras_transfer.models.MultiTaskModel(trunk, {"a": 2, "b": 3}, loss_weights="uncertainty")
        >>> s = np.log([1.0, 2.0])  # sigma_a^2 = 1, sigma_b^2 = 2
        >>> round(float(model.total_loss(np.array([0.5, 1.0]), log_variances=s)), 4)  # 0.5 + (0.5 + ln 2 / 2)
        1.3466
        """
        task_losses = ops.convert_to_tensor(task_losses)
        dtype = task_losses.dtype
        if present is None:
            present = ops.ones(ops.shape(task_losses), dtype="bool")
        if self.loss_weight_mode == "uncertainty":
            s = self.log_variances.value if log_variances is None else log_variances
            s = ops.cast(ops.convert_to_tensor(s), dtype)
            terms = ops.exp(-s) * task_losses + 0.5 * s
        else:
            terms = ops.convert_to_tensor(self.fixed_loss_weights, dtype=dtype) * task_losses
        return ops.sum(ops.where(present, terms, ops.zeros_like(terms)))

    def _task_terms(self, outputs, task, y, sample_weight):
        """Per task: mean loss `(T,)`, examples `(T,)`, and per-example correctness with its weight."""
        task = ops.cast(ops.reshape(task, (-1,)), "int32")
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        checks = self._check_ids(task, y)
        with tf.control_dependencies(checks):
            task = tf.identity(task)
        weight = ops.ones(ops.shape(task), "float32")
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        losses, counts, accuracy = [], [], []
        for index, name in enumerate(self.task_names):
            mask = ops.equal(task, index)
            labels = ops.where(mask, y, ops.zeros_like(y))  # other tasks' labels may be out of this head's range
            scores = ops.cast(outputs[name], "float32")
            ce = keras.losses.sparse_categorical_crossentropy(labels, scores, from_logits=self.from_logits)
            count = ops.sum(ops.cast(mask, "float32"))
            weighted = ops.where(mask, ce * weight, ops.zeros_like(ce))
            losses.append(ops.sum(weighted) / ops.maximum(count, 1.0))
            counts.append(count)
            correct = ops.cast(ops.equal(ops.cast(ops.argmax(scores, axis=-1), "int32"), labels), "float32")
            accuracy.append((correct, ops.where(mask, weight, ops.zeros_like(weight))))
        return ops.stack(losses), ops.stack(counts), accuracy

    def _check_ids(self, task, y):
        tasks = len(self.task_names)
        ok_task = ops.logical_and(ops.greater_equal(task, 0), ops.less(task, tasks))
        classes = ops.take(ops.convert_to_tensor(self.num_classes, "int32"), ops.clip(task, 0, tasks - 1))
        ok_label = ops.logical_and(ops.greater_equal(y, 0), ops.less(y, classes))
        return [
            tf.debugging.Assert(
                ops.all(ok_task), [f"MultiTaskModel: task ids must lie in [0, {tasks}) ({list(self.task_names)})."]
            ),
            tf.debugging.Assert(
                ops.all(ok_label),
                [f"MultiTaskModel: labels must lie in [0, classes of the example's task) {self.num_classes}."],
            ),
        ]

    def _unpack(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, task = split_inputs(x, type(self).__name__)
        if y is None:
            raise ValueError(
                f"`{type(self).__name__}` trains on labelled batches. Received: a batch without labels. "
                'Pass `({"inputs": x, "task": task_ids}, y)`.'
            )
        return inputs, task, y, sample_weight

    # ------------------------------------------------------------------ steps
    def _head_variables(self):
        return [list(head.weights) for head in self.heads.values()]

    def train_step(self, data):
        inputs, task, y, sample_weight = self._unpack(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self._head_outputs(inputs, training=True)
            task_losses, counts, accuracy = self._task_terms(outputs, task, y, sample_weight)
            present = ops.greater(counts, 0.0)
            loss = self.total_loss(task_losses, present)
            if self.losses:
                loss = loss + ops.cast(ops.sum(self.losses), "float32")
            scaled = self.optimizer.scale_loss(loss / replicas)
        before = [[tf.identity(v.value) for v in group] for group in self._head_variables()]
        if self.log_variances is not None:
            before_s = tf.identity(self.log_variances.value)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        # An absent task's head and log-variance stay put (momentum would move them otherwise).
        for index, group in enumerate(self._head_variables()):
            for variable, old in zip(group, before[index]):
                variable.assign(ops.where(present[index], variable.value, old))
        if self.log_variances is not None:
            self.log_variances.assign(ops.where(present, self.log_variances.value, before_s))
        return self._report(inputs, loss, task_losses, counts, accuracy, outputs)

    def test_step(self, data):
        inputs, task, y, sample_weight = self._unpack(data)
        outputs = self._head_outputs(inputs, training=False)
        task_losses, counts, accuracy = self._task_terms(outputs, task, y, sample_weight)
        loss = self.total_loss(task_losses, ops.greater(counts, 0.0))
        return self._report(inputs, loss, task_losses, counts, accuracy, outputs)

    def _report(self, inputs, loss, task_losses, counts, accuracy, outputs):
        self.loss_tracker.update_state(loss)
        for index in range(len(self.task_names)):
            self.task_loss_trackers[index].update_state(task_losses[index], sample_weight=counts[index])
            correct, weight = accuracy[index]
            self.task_accuracy_trackers[index].update_state(correct, sample_weight=weight)
        # The inputs too: NaN does not always reach the outputs (oneDNN's fused MatMul+ReLU maps it to 0).
        finite = ops.logical_and(model_state_is_finite(self, outputs), all_finite(tf.nest.flatten(inputs)))
        poison_metrics(self.metrics, finite)
        return self.get_metrics_result()

    @property
    def metrics(self):
        trackers = [self.loss_tracker]
        for loss_tracker, accuracy_tracker in zip(self.task_loss_trackers, self.task_accuracy_trackers):
            trackers += [loss_tracker, accuracy_tracker]
        return trackers

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` without `loss` / `metrics`: the per-task cross-entropies are built in.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: must be None.
            metrics: must be None (`<task>_loss` and `<task>_accuracy` are logged).
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`, ...).

        Raises:
            ValueError: if `loss` or `metrics` is given.
        """
        for name, value in (("loss", loss), ("metrics", metrics)):
            if value:
                raise ValueError(
                    f"`{name}` must be None for `MultiTaskModel`: each task's cross-entropy, `<task>_loss` "
                    f"and `<task>_accuracy` are built in (weigh the tasks with `loss_weights`). "
                    f"Received: {name}={value!r}. Compile with an optimizer only."
                )
        super().compile(optimizer=optimizer, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        check_arrays(x, y, self.num_classes, self.task_names)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_arrays(x, y, self.num_classes, self.task_names)
        return super().evaluate(x, y, *args, **kwargs)

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "heads": {name: keras.saving.serialize_keras_object(head) for name, head in self.heads.items()},
                "loss_weights": self.loss_weights,
                "from_logits": self.from_logits,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["heads"] = {
            name: keras.saving.deserialize_keras_object(head) if isinstance(head, dict) else head
            for name, head in config["heads"].items()
        }
        return super().from_config(config)
