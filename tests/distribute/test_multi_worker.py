"""`keras_transfer.distribute.fit` under MultiWorkerMirroredStrategy: two worker processes
on 127.0.0.1 against one process, and an interrupted run that resumes from its checkpoint.

The workers run tests/distribute/_multi_worker_probe.py (a cluster must be configured
through TF_CONFIG before TensorFlow starts, which a shared pytest process cannot do).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import distribute
from tests.test_case import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, "tests", "distribute", "_multi_worker_probe.py")
# Only a guard against a hung worker (one waits for its peer forever): slow machines take minutes.
TIMEOUT_S = 900
MODELS = ("classifier", "simclr", "moco", "dann")
EXIT_CODE = 17  # _multi_worker_probe.INTERRUPT_EXIT_CODE: the "train" workers exit at the interruption


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config=None):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for process in processes:
        process.wait()


def _launch(jobs, log_dir):
    """Runs `jobs` (tag, probe args, env, expected exit code) at once, each in its own process
    group; kills all on timeout, or soon after one exits with an unexpected code (a worker
    left alone would wait for its peer until the timeout). Returns exit codes and log tails."""
    processes, logs = [], []
    try:
        for tag, args, env, _ in jobs:
            log = open(os.path.join(log_dir, f"{tag}.log"), "w+")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, PROBE, *args],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            codes = [p.poll() for p in processes]
            if all(code is not None for code in codes):
                break
            if any(code is not None and code != job[3] for code, job in zip(codes, jobs)):
                deadline = min(deadline, time.monotonic() + 10.0)
            time.sleep(0.2)
        codes = [p.poll() for p in processes]
    finally:
        _stop(processes)
    outputs = []
    for (tag, *_), log in zip(jobs, logs):
        log.seek(0)
        outputs.append(f"[{tag}]\n" + log.read()[-4000:])
        log.close()
    return codes, outputs


def _worker_jobs(mode, out_dir, work_dir, expected_code):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [
        (
            f"{mode}_{i}",
            [mode, os.path.join(out_dir, f"{mode}_{i}.npz"), work_dir],
            _env({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            expected_code,
        )
        for i in range(2)
    ]


def _load(path):
    data = np.load(path)
    return json.loads(str(data["meta"])), {k: data[k] for k in data.files if k != "meta"}


class MultiWorkerFitTest(TestCase):
    @classmethod
    def setUpClass(cls):
        # One launch of each kind serves every test below (TensorFlow starts in ~5 s per process).
        import tempfile

        cls.tmp = tempfile.mkdtemp(prefix="keras_transfer_mw_")
        work_dir = os.path.join(cls.tmp, "shared")
        os.makedirs(work_dir)
        # One process on the default strategy and two workers (equality runs, then a
        # checkpointed run that dies when its last epoch begins), all at once ...
        reference = ("reference", ["reference", os.path.join(cls.tmp, "reference.npz")], _env(), 0)
        codes, outputs = _launch([reference] + _worker_jobs("train", cls.tmp, work_dir, EXIT_CODE), cls.tmp)
        cls.codes = {"reference": codes[:1], "train": codes[1:]}
        cls.outputs = {"reference": outputs[:1], "train": outputs[1:]}
        # ... then the same two workers restarted: the run resumes from the checkpoint.
        codes, outputs = _launch(_worker_jobs("resume", cls.tmp, work_dir, 0), cls.tmp)
        cls.codes["resume"], cls.outputs["resume"] = codes, outputs
        cls.work_dir = work_dir

    @classmethod
    def tearDownClass(cls):
        import shutil

        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _results(self, mode):
        expected = {"reference": [0], "train": [EXIT_CODE] * 2, "resume": [0, 0]}[mode]
        self.assertEqual(self.codes[mode], expected, f"{mode} failed:\n" + "\n---\n".join(self.outputs[mode]))
        if mode == "reference":
            return _load(os.path.join(self.tmp, "reference.npz"))[1]
        return [_load(os.path.join(self.tmp, f"{mode}_{i}.npz")) for i in range(2)]

    def test_keras_fit_fails_under_multi_worker(self):
        # The reason the runner exists (TensorFlow issue 72388). If this starts failing,
        # Keras's `fit` works under MultiWorkerMirroredStrategy: update README and runner.py.
        for meta, _ in self._results("train"):
            self.assertEqual(meta["replicas"], 2)
            self.assertIn("PerReplica", meta["keras_fit_error"])
            # It fails before any callback runs: BackupAndRestore never wrote its backup.
            self.assertFalse(meta["backup_dir_written"])
        self.assertEqual([meta["chief"] for meta, _ in self._results("train")], [True, False])

    def test_two_workers_match_one_process(self):
        reference = self._results("reference")
        workers = self._results("train")
        for model in MODELS:
            weights = sorted(k for k in reference if k.startswith(f"{model}/w"))
            self.assertGreater(len(weights), 1)
            for key in weights:
                # Trained away from the initial weights, identically on both workers ...
                self.assertAllClose(workers[0][1][key], workers[1][1][key], atol=0, rtol=0)
                # ... and as one process on the same global batches (float32 reduction order).
                self.assertAllClose(workers[0][1][key], reference[key], atol=3e-5, rtol=3e-5, msg=key)
            self.assertAllClose(workers[0][1][f"{model}/loss"], reference[f"{model}/loss"], atol=1e-5, rtol=1e-5)
            self.assertEqual(len(reference[f"{model}/loss"]), 3)
        # The tolerance would catch a real difference: SimCLR with negatives from the local
        # batch only (cross_replica=False) ends far from one process's weights.
        local = max(
            float(np.max(np.abs(workers[0][1][k.replace("simclr/", "simclr_local/")] - reference[k])))
            for k in reference
            if k.startswith("simclr/w")
        )
        self.assertGreater(local, 1e-2)

    def test_runner_matches_keras_fit_in_one_process(self):
        reference = self._results("reference")
        for model in MODELS:
            self.assertAllClose(reference[f"{model}/loss"], reference[f"{model}_keras/loss"], atol=1e-5, rtol=1e-5)
            for key in (k for k in reference if k.startswith(f"{model}/w")):
                other = key.replace(f"{model}/", f"{model}_keras/")
                self.assertAllClose(reference[key], reference[other], atol=1e-5, rtol=1e-5, msg=key)

    def test_mirrored_strategy_matches_one_device(self):
        # The same runner on one process with two replicas (MirroredStrategy, 2 logical CPUs).
        reference = self._results("reference")
        for model in MODELS:
            for key in (k for k in reference if k.startswith(f"{model}/w")):
                self.assertAllClose(reference[f"mirrored_{key}"], reference[key], atol=3e-5, rtol=3e-5, msg=key)
            self.assertAllClose(reference[f"mirrored_{model}/loss"], reference[f"{model}/loss"], atol=1e-5, rtol=1e-5)

    def test_interrupted_run_resumes(self):
        reference = self._results("reference")
        for meta, results in self._results("resume"):
            self.assertEqual(meta["resumed_epochs"], [2])  # epochs 0 and 1 came from the checkpoint
            self.assertIn("`checkpoint_dir` must be readable by every worker", meta["unshared_error"])
            self.assertAllClose(results["resumed/loss"], reference["classifier/loss"][2:], atol=1e-5, rtol=1e-5)
            for key in (k for k in reference if k.startswith("classifier/w")):
                resumed = key.replace("classifier/", "resumed/")
                self.assertAllClose(results[resumed], reference[key], atol=1e-5, rtol=1e-5, msg=key)
        # The chief wrote the checkpoints (max_to_keep=2); the other worker's temporary folder is gone.
        files = sorted(os.listdir(os.path.join(self.work_dir, "checkpoints")))
        self.assertEqual(
            [f for f in files if f.startswith("ckpt-") and f.endswith(".index")], ["ckpt-2.index", "ckpt-3.index"]
        )
        self.assertFalse([f for f in files if f.startswith(".workertemp")])


def _model(hidden=4):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hidden, activation="tanh"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def _data(n=12, batch=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=1).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


class StopAtBatch(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            self.model.stop_training = True


class FitInOneProcessTest(TestCase):
    """The runner's features on the default strategy (the same code path as several workers)."""

    def test_matches_keras_fit(self):
        model, twin = _model(), _model()
        history = distribute.fit(model, _data(), epochs=3, verbose=0)
        expected = twin.fit(_data(), epochs=3, verbose=0, shuffle=False)
        self.assertEqual(history.epoch, [0, 1, 2])
        self.assertAllClose(history.history["loss"], expected.history["loss"], atol=1e-6)
        for actual, desired in zip(model.get_weights(), twin.get_weights()):
            self.assertAllClose(actual, desired, atol=1e-6)
        self.assertEqual(int(model.optimizer.iterations), 9)

    def test_steps_per_epoch_continues_the_iterator(self):
        model, twin = _model(), _model()
        history = distribute.fit(model, _data().repeat(), epochs=2, steps_per_epoch=2, verbose=0)
        twin.fit(_data().repeat().take(4), epochs=1, verbose=0, shuffle=False)  # the same 4 batches
        self.assertEqual(len(history.history["loss"]), 2)
        self.assertEqual(int(model.optimizer.iterations), 4)
        for actual, desired in zip(model.get_weights(), twin.get_weights()):
            self.assertAllClose(actual, desired, atol=1e-6)

    def test_data_running_out_stops_with_a_warning(self):
        model = _model()
        with self.assertWarnsRegex(UserWarning, "ran out of data after 1 batches of epoch 2"):
            history = distribute.fit(model, _data(), epochs=5, steps_per_epoch=2, verbose=0)
        self.assertEqual(history.epoch, [0, 1])  # the partial epoch is logged, then training stops
        self.assertEqual(int(model.optimizer.iterations), 3)

    def test_callbacks_and_stop_training(self):
        model = _model()
        seen = []
        record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["loss"])))
        history = distribute.fit(model, _data(), epochs=4, callbacks=[record, StopAtBatch(1)], verbose=0)
        self.assertEqual(int(model.optimizer.iterations), 2)
        self.assertEqual(history.epoch, [0])
        self.assertEqual([epoch for epoch, _ in seen], [0])
        self.assertAllClose(seen[0][1], history.history["loss"][0])

    def test_progress_bar(self):
        import contextlib
        import io

        for verbose, expected in ((1, ["Epoch 1/2", "Epoch 2/2", "3/3", "loss:"]), (2, ["Epoch 2/2", "3/3", "loss:"])):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                distribute.fit(_model(), _data(), epochs=2, verbose=verbose)
            for text in expected:
                self.assertIn(text, out.getvalue())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            distribute.fit(_model(), _data(), epochs=2, verbose=0)
        self.assertEqual(out.getvalue(), "")

    def test_checkpoint_resume_in_one_process(self):
        directory = self.get_temp_dir()
        first = _model()
        self.assertEqual(distribute.fit(first, _data(), epochs=2, checkpoint_dir=directory, verbose=0).epoch, [0, 1])
        resumed = _model()  # a fresh process would build the same model again
        history = distribute.fit(resumed, _data(), epochs=3, checkpoint_dir=directory, verbose=0)
        self.assertEqual(history.epoch, [2])
        straight = _model()
        expected = distribute.fit(straight, _data(), epochs=3, verbose=0)
        self.assertAllClose(history.history["loss"], expected.history["loss"][2:], atol=1e-6)
        for actual, desired in zip(resumed.get_weights(), straight.get_weights()):
            self.assertAllClose(actual, desired, atol=1e-6)
        self.assertEqual(int(resumed.optimizer.iterations), 9)  # Adam's step count came back too
        # Already done: nothing to train, the checkpoint's weights are loaded.
        again = _model()
        self.assertEqual(distribute.fit(again, _data(), epochs=3, checkpoint_dir=directory, verbose=0).epoch, [])
        for actual, desired in zip(again.get_weights(), straight.get_weights()):
            self.assertAllClose(actual, desired, atol=1e-6)
        self.assertEqual(
            sorted(f for f in os.listdir(directory) if f.endswith(".index")), ["ckpt-2.index", "ckpt-3.index"]
        )
        with self.assertRaisesRegex(ValueError, "`checkpoint_dir` must hold checkpoints of this model"):
            distribute.fit(_model(hidden=5), _data(), epochs=3, checkpoint_dir=directory, verbose=0)

    def test_is_chief(self):
        from keras_transfer.distribute.cluster import _is_chief_task

        self.assertTrue(distribute.is_chief())
        self.assertTrue(distribute.is_chief(tf.distribute.get_strategy()))
        self.assertTrue(_is_chief_task("worker", 0, {"worker": ["a", "b"]}))
        self.assertFalse(_is_chief_task("worker", 1, {"worker": ["a", "b"]}))
        self.assertFalse(_is_chief_task("worker", 0, {"chief": ["c"], "worker": ["a"]}))
        self.assertTrue(_is_chief_task("chief", 0, {"chief": ["c"], "worker": ["a"]}))
        with self.assertRaisesRegex(ValueError, "`strategy` must be a `tf.distribute.Strategy`"):
            distribute.is_chief("mirrored")

    def test_errors(self):
        model, data = _model(), _data()
        cases = [
            (dict(model="model"), "`model` must be a `keras.Model`"),
            (dict(dataset=np.ones((4, 3))), "`dataset` must be a `tf.data.Dataset`"),
            (dict(epochs=0), "`epochs` must be a positive integer. Received: epochs=0"),
            (dict(steps_per_epoch=0), "`steps_per_epoch` must be a positive integer"),
            (dict(max_to_keep=0), "`max_to_keep` must be a positive integer"),
            (dict(verbose=3), "`verbose` must be one of"),
            (dict(strategy="mirrored"), "`strategy` must be a `tf.distribute.Strategy`"),
            (dict(checkpoint_dir=3), "`checkpoint_dir` must be a folder path"),
            (dict(callbacks=["stop"]), "`callbacks` must be a list of `keras.callbacks.Callback`"),
            (
                dict(callbacks=[keras.callbacks.BackupAndRestore(self.get_temp_dir())]),
                "`callbacks` must not hold `keras.callbacks.BackupAndRestore`: pass `checkpoint_dir=`",
            ),
            (dict(dataset=data.repeat()), "`steps_per_epoch` must be set when `dataset` is infinite"),
            (
                dict(strategy=tf.distribute.MirroredStrategy(["/cpu:0"])),
                "`model` must be created under `strategy.scope\\(\\)`.*created under no strategy",
            ),
        ]
        for overrides, message in cases:
            arguments = {**dict(model=model, dataset=data, epochs=1, verbose=0), **overrides}
            with self.assertRaisesRegex(ValueError, message):
                distribute.fit(**arguments)
        uncompiled = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        with self.assertRaisesRegex(ValueError, "`model` must be compiled before `fit`"):
            distribute.fit(uncompiled, data, verbose=0)
        self.assertEqual(int(model.optimizer.iterations), 0)  # no error trained anything
