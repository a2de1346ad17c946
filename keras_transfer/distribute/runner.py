"""A `fit` for `tf.distribute` strategies that Keras's own `fit` cannot run.

Keras 3's `Model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(TensorFlow issue 72388, Keras issue 20585; still so with TensorFlow 2.21 and
Keras 3.15): before the first step it averages the first distributed batch with
`strategy.reduce("MEAN", (x, y))`, which a multi-worker strategy cannot do on a
tuple ("Attempt to convert a value (PerReplica...) to a Tensor"), and it reduces
the scalar step logs with `axis=0` ("Invalid reduction dimension 0 for input
with 0 dimensions").

`fit` below drives the model's own `train_step` with `strategy.run` over
`strategy.experimental_distribute_dataset`. Tested with the default strategy and
with `MultiWorkerMirroredStrategy` over two local worker processes (a classifier,
SimCLR, MoCo and DANN end with one process's weights); written for `MirroredStrategy`
and `TPUStrategy` too, but untested on a TPU.
"""

import os
import shutil
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from keras_transfer.distribute.cluster import is_chief
from keras_transfer.utils import model_graph
from keras_transfer.utils.validation import check_one_of
from keras_transfer.utils.validation import check_positive_int


def fit(
    model,
    dataset,
    epochs=1,
    strategy=None,
    steps_per_epoch=None,
    callbacks=None,
    checkpoint_dir=None,
    max_to_keep=2,
    verbose="auto",
):
    """Trains `model` on `dataset` with `strategy`, one `model.train_step` per batch.

    Each step is `strategy.run(model.train_step, (batch,))` inside a
    `tf.function`; the logs are averaged over replicas (`ReduceOp.MEAN`, as
    Keras's `fit` does), so a model whose step reports global values (SimCLR,
    CLIP, DANN) logs them exactly. Every worker of a cluster runs the same call
    on the same dataset: each global batch is split between the replicas by
    `experimental_distribute_dataset` (each worker reads the whole dataset and
    keeps its share, so seed any shuffle identically on every worker).

    Checkpoints: with `checkpoint_dir`, the model's variables, the optimizer's
    variables and the epoch are saved with a `tf.train.CheckpointManager` at the
    end of every epoch. Every worker takes part in the save (TensorFlow's
    multi-worker recipe) but only the chief (`is_chief`) writes into
    `checkpoint_dir`; the others write into a temporary folder they delete. On
    start, the latest checkpoint there is restored and training continues with
    the next epoch, so re-running the same script after an interruption resumes
    it (the data starts over at the beginning of that epoch). Every worker must
    be able to read `checkpoint_dir` (a shared file system or a bucket).

    Args:
        model: a compiled Keras model, created (and compiled) under
            `strategy.scope()`.
        dataset: a `tf.data.Dataset` of GLOBAL batches (what one `fit` on one
            device would take); shuffle it yourself.
        epochs: number of epochs to train (counting the ones a restored
            checkpoint already holds), a positive integer.
        strategy: the `tf.distribute.Strategy` the model was created under, or
            None for that one (`model.distribute_strategy`).
        steps_per_epoch: batches per epoch, or None to run each epoch until the
            dataset ends. With a value, one iterator runs across epochs (use
            `dataset.repeat()` for more batches than the dataset holds).
        callbacks: Keras callbacks (`on_train_*`, `on_epoch_*`,
            `on_train_batch_*` hooks and `model.stop_training` are honoured).
            They run on every worker with the same logs. Use `checkpoint_dir`
            rather than `keras.callbacks.BackupAndRestore`, which would make
            every worker write the same files.
        checkpoint_dir: folder for checkpoints and resumption, or None.
        max_to_keep: checkpoints kept in `checkpoint_dir`, a positive integer.
        verbose: `"auto"` (1), 0 (silent), 1 (progress bar) or 2 (one line per
            epoch). Only the chief prints.

    Returns:
        A `keras.callbacks.History`: `history.history[name]` lists the epoch
        logs of the epochs this call trained; `history.epoch` their indices.

    Raises:
        ValueError: if `model` is not a compiled `keras.Model` created under
            `strategy`, `dataset` is not a `tf.data.Dataset` of dense tensors,
            a count is not positive, `verbose` is not "auto", 0, 1 or 2,
            `callbacks` holds something other than Keras callbacks (or
            `BackupAndRestore`), an infinite dataset comes without
            `steps_per_epoch`, or `checkpoint_dir` holds checkpoints of another
            model (or is not readable by every worker).

    Reference:
        TensorFlow, "Custom training loop with Keras and MultiWorkerMirroredStrategy":
        https://www.tensorflow.org/tutorials/distribute/multi_worker_with_ctl

    Example:

    >>> import tensorflow as tf
    >>> strategy = tf.distribute.get_strategy()  # or MultiWorkerMirroredStrategy()
    >>> with strategy.scope():
    ...     model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ...     model.compile(optimizer="sgd", loss="mse")
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.ones((8, 3), "float32"), np.zeros((8, 2), "float32"))).batch(4)
    >>> history = keras_transfer.distribute.fit(
    ...     model, data, epochs=2, strategy=strategy, verbose=0)
    >>> len(history.history["loss"]), history.epoch
    (2, [0, 1])
    """
    strategy = _check_model_and_strategy(model, strategy)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`dataset` must be a `tf.data.Dataset` of global batches. Received: dataset={type(dataset).__name__}"
        )
    epochs = check_positive_int("epochs", epochs)
    if steps_per_epoch is not None:
        steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    max_to_keep = check_positive_int("max_to_keep", max_to_keep)
    verbose = 1 if verbose == "auto" else check_one_of("verbose", verbose, (0, 1, 2))
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise ValueError(f"`checkpoint_dir` must be a folder path or None. Received: checkpoint_dir={checkpoint_dir!r}")
    callbacks = _check_callbacks(callbacks)
    chief = is_chief(strategy)
    if not chief:
        verbose = 0

    _build(model, dataset, strategy)
    epoch_counter, manager, initial_epoch = _checkpointing(model, strategy, checkpoint_dir, max_to_keep, chief)

    train_function = _make_train_function(model, strategy)
    distributed = strategy.experimental_distribute_dataset(dataset)
    steps = steps_per_epoch if steps_per_epoch is not None else _dataset_steps(dataset)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        callbacks + [history],
        add_history=False,
        add_progbar=False,
        model=model,
        epochs=epochs,
        steps=steps,
        verbose=verbose,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    iterator = iter(distributed) if steps_per_epoch is not None else None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        if verbose and epochs > 1:  # as Keras's ProgbarLogger
            print(f"Epoch {epoch + 1}/{epochs}")
        epoch_iterator = iterator if iterator is not None else iter(distributed)
        epoch_logs = _run_epoch(
            model, train_function, epoch_iterator, epoch, steps, steps_per_epoch, callback_list, verbose
        )
        if epoch_logs is None:
            break  # No batch this epoch (the data ran out): nothing to log or save.
        logs = dict(epoch_logs)
        callback_list.on_epoch_end(epoch, logs)
        if manager is not None:
            _save(manager, epoch_counter, epoch + 1, chief)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


def _checkpointing(model, strategy, checkpoint_dir, max_to_keep, chief):
    """(epoch variable, checkpoint manager or None, epoch to start from), after restoring the latest checkpoint."""
    with strategy.scope():
        epoch_counter = tf.Variable(0, dtype="int64", trainable=False, name="epoch")
    if checkpoint_dir is None:
        return epoch_counter, None, 0
    checkpoint = tf.train.Checkpoint(
        model_variables=list(model.variables),
        optimizer_variables=list(model.optimizer.variables),
        epoch=epoch_counter,
    )
    checkpoint_dir = os.fspath(checkpoint_dir)
    initial_epoch = _restore(checkpoint, checkpoint_dir, epoch_counter, strategy)
    write_dir = checkpoint_dir if chief else _worker_temp_dir(checkpoint_dir, strategy)
    manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_to_keep)
    return epoch_counter, manager, initial_epoch


def _save(manager, epoch_counter, epochs_done, chief):
    # Every worker saves (the collective needs them all); only the chief keeps its files.
    epoch_counter.assign(epochs_done)
    manager.save()
    if not chief:
        shutil.rmtree(manager.directory, ignore_errors=True)


def _check_model_and_strategy(model, strategy):
    """The strategy to train under, after checking that `model` is compiled under it."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a `keras.Model`. Received: model={model!r}")
    # The strategy whose scope the model was created in (None: outside every scope).
    owner = model_graph.distribute_strategy(model)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(f"`strategy` must be a `tf.distribute.Strategy` or None. Received: strategy={strategy!r}")
    if strategy is None:
        strategy = owner or tf.distribute.get_strategy()
    current_is_default = not tf.distribute.has_strategy()
    default = current_is_default and strategy is tf.distribute.get_strategy()
    if owner is not strategy and not (owner is None and default):
        raise ValueError(
            "`model` must be created under `strategy.scope()` (its variables belong to the strategy "
            f"that was current when it was built). Received: model={model.name!r} created under "
            f"{type(owner).__name__ if owner else 'no strategy'}, strategy={type(strategy).__name__}"
        )
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise ValueError(
            "`model` must be compiled before `fit` (call `model.compile(optimizer=...)` under "
            f"`strategy.scope()`). Received: model={model.name!r} (not compiled)"
        )
    return strategy


def _check_callbacks(callbacks):
    callbacks = list(callbacks or [])
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise ValueError(
                f"`callbacks` must be a list of `keras.callbacks.Callback`. Received: callbacks={callbacks!r}"
            )
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            raise ValueError(
                "`callbacks` must not hold `keras.callbacks.BackupAndRestore`: pass "
                "`checkpoint_dir=` instead (every worker would write the same backup files, and "
                f"this loop does not read its restored epoch). Received: callbacks={callbacks!r}"
            )
    return callbacks


def _dataset_steps(dataset):
    """Batches per epoch of a finite dataset (None when unknown); infinite datasets are refused."""
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "`steps_per_epoch` must be set when `dataset` is infinite (e.g. `.repeat()`). "
            "Received: steps_per_epoch=None"
        )
    return cardinality if cardinality > 0 else None


def _run_epoch(model, train_function, iterator, epoch, steps, steps_per_epoch, callback_list, verbose):
    """Runs the steps of one epoch; returns the last step's logs (None if no batch was left)."""
    progbar = keras.utils.Progbar(target=steps, verbose=verbose) if verbose else None
    step = 0
    epoch_logs = None
    while steps_per_epoch is None or step < steps_per_epoch:
        try:
            batch = next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            if steps_per_epoch is not None:
                warnings.warn(
                    f"The dataset ran out of data after {step} batches of epoch {epoch + 1}: "
                    "training stops (use `dataset.repeat()` with `steps_per_epoch`).",
                    stacklevel=3,
                )
                model.stop_training = True
            break
        callback_list.on_train_batch_begin(step)
        epoch_logs = {name: float(value) for name, value in train_function(batch).items()}
        callback_list.on_train_batch_end(step, epoch_logs)
        step += 1
        if progbar is not None:
            progbar.update(step, list(epoch_logs.items()), finalize=False)
        if model.stop_training:
            break
    if progbar is not None and epoch_logs is not None:
        progbar.update(step, list(epoch_logs.items()), finalize=True)
    return epoch_logs


def _build(model, dataset, strategy):
    # What `Model.fit` does before its first step, from the dataset's element spec (no batch read):
    # build the model, its compiled loss and metrics, and the optimizer, all under the strategy.
    def symbolic(spec):
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                "`dataset` must yield dense tensors (nested tuples/dicts of them). "
                f"Received: an element spec holding {spec!r}"
            )
        return keras.KerasTensor(tuple(spec.shape), keras.backend.standardize_dtype(spec.dtype))

    with strategy.scope():
        model_graph.symbolic_build(model, tree.map_structure(symbolic, dataset.element_spec))
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


def _make_train_function(model, strategy):
    def step(batch):
        logs = model.train_step(batch)
        return {name: tf.cast(value, "float32") for name, value in logs.items()}

    @tf.function(reduce_retracing=True)
    def train_function(batch):
        logs = strategy.run(step, args=(batch,))
        # One scalar per name: the mean over replicas (Keras's `fit` reduction).
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    return train_function


def _restore(checkpoint, checkpoint_dir, epoch_counter, strategy):
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is not None:
        try:
            checkpoint.restore(latest).assert_consumed()
        except (AssertionError, ValueError) as error:
            raise ValueError(
                "`checkpoint_dir` must hold checkpoints of this model and optimizer (same variables, "
                f"same order). Received: checkpoint_dir={checkpoint_dir!r} ({error})"
            ) from None
    restored = int(epoch_counter.numpy())
    # Every worker must resume from the same epoch (a folder that only the chief can read
    # would leave the others at 0 and silently diverge): compare across replicas.
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.num_replicas_in_sync > 1:
        value = tf.constant(float(restored))
        mean = tf.function(lambda: strategy.reduce("MEAN", strategy.run(lambda: tf.identity(value)), axis=None))()
        if not np.isclose(float(mean), restored):
            raise ValueError(
                "`checkpoint_dir` must be readable by every worker (a shared file system or bucket): "
                f"this worker restored epoch {restored}, the cluster's mean is {float(mean):g}. "
                f"Received: checkpoint_dir={checkpoint_dir!r}"
            )
    return restored


def _worker_temp_dir(checkpoint_dir, strategy):
    resolver = strategy.cluster_resolver
    task = f"{resolver.task_type}_{resolver.task_id}"
    return os.path.join(checkpoint_dir, f".workertemp_{task}")
