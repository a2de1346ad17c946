import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.augment import SimCLRAugmentation
from keras_transfer.models import MoCo
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import make_encoder
from tests.models.test_simclr import make_pairs
from tests.models.test_simclr import nan_hiding_encoder
from tests.models.test_simclr import pairs_dataset
from tests.test_case import TestCase


def normalize(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def make_bn_encoder():
    """Conv -> BatchNorm -> ReLU -> pooling: keys depend on batch statistics."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, use_bias=False, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="encoder",
    )


# ------------------------------------------------- NumPy reference of Algorithm 1
def numpy_forward(params, x):
    """Encoder Dense(4, tanh) then head Dense(3): params = [W1, b1, W2, b2]."""
    w1, b1, w2, b2 = params
    return np.tanh(x @ w1 + b1) @ w2 + b2


def numpy_step_loss(params_q, x1, k, queue, temperature):
    q = normalize(numpy_forward(params_q, x1))
    logits = np.concatenate([np.sum(q * k, axis=1, keepdims=True), q @ queue.T], axis=1) / temperature
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.sum(np.exp(logits - top), axis=1, keepdims=True))
    return -np.mean(log_softmax[:, 0])  # cross-entropy with label 0


def numerical_gradient(fn, params, eps=1e-6):
    grads = []
    for i, p in enumerate(params):
        g = np.zeros_like(p)
        for j in range(p.size):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[i].reshape(-1)[j] += eps
            minus[i].reshape(-1)[j] -= eps
            g.reshape(-1)[j] = (fn(plus) - fn(minus)) / (2 * eps)
        grads.append(g)
    return grads


def numpy_moco_step(state, x1, x2, momentum, temperature, lr):
    """One MoCo step (He et al. 2020, Algorithm 1; momentum update first, as in the official code)."""
    params_q, params_k, queue, pointer = state
    params_k = [momentum * k + (1 - momentum) * q for k, q in zip(params_k, params_q)]
    k = normalize(numpy_forward(params_k, x2))
    fn = lambda p: numpy_step_loss(p, x1, k, queue, temperature)  # noqa: E731
    loss = fn(params_q)
    grads = numerical_gradient(fn, params_q)
    params_q = [p - lr * g for p, g in zip(params_q, grads)]
    queue = queue.copy()
    queue[(pointer + np.arange(len(k))) % len(queue)] = k  # enqueue the keys, dequeue the oldest
    return (params_q, params_k, queue, (pointer + len(k)) % len(queue)), loss


def numpy_info_nce(q, k, queue, temperature):
    """He et al. (2020), Algorithm 1: logits = [q.k, q.queue^T] / t, cross-entropy with label 0."""
    q, k = normalize(np.asarray(q, "float64")), normalize(np.asarray(k, "float64"))
    logits = np.concatenate([np.sum(q * k, axis=1, keepdims=True), q @ np.asarray(queue, "float64").T], axis=1)
    logits /= temperature
    log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(log_softmax[:, 0]), np.mean(np.argmax(logits, axis=1) == 0)


class MoCoTest(TestCase):
    def build(self, encoder=None, **kwargs):
        kwargs.setdefault("projection_dim", 4)
        kwargs.setdefault("queue_size", 6)
        kwargs.setdefault("momentum", 0.9)
        kwargs.setdefault("temperature", 0.5)
        model = MoCo(encoder if encoder is not None else make_encoder(), **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        return model

    def test_loss_matches_numpy(self):
        model = self.build()
        v1, v2 = make_pairs(4)
        q = model.projection_head(model.encoder(v1)).numpy()
        k = model.key_projection_head(model.key_encoder(v2)).numpy()
        self.assertAllClose(np.linalg.norm(model.queue.numpy(), axis=1), np.ones(6), atol=1e-5)
        expected_loss, expected_acc = numpy_info_nce(q, k, model.queue.numpy(), 0.5)
        result = model.evaluate(pairs_dataset(v1, v2, 4), verbose=0, return_dict=True)
        self.assertAllClose(result["loss"], expected_loss, atol=1e-5, rtol=1e-5)
        self.assertAllClose(result["contrastive_accuracy"], expected_acc, atol=1e-6)

    def test_two_sgd_steps_match_numpy_algorithm_1(self):
        # A tiny encoder without BatchNorm: every quantity of Algorithm 1 is checkable in float64.
        encoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh")], name="encoder")
        head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="head")
        # bn_splits=3 on batches of 5 (chunks 2, 2, 1): the permutation must be undone exactly.
        model = MoCo(encoder, projection_head=head, queue_size=6, momentum=0.8, temperature=0.5, bn_splits=3)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        rng = np.random.default_rng(3)
        # Start the key encoder away from the query so that the first EMA update is visible.
        key_vars = model.key_encoder.weights + model.key_projection_head.weights
        for v in key_vars:
            v.assign(v.numpy() + rng.normal(0, 0.3, v.shape).astype("float32"))
        state = (
            [v.numpy().astype("float64") for v in model.encoder.weights + model.projection_head.weights],
            [v.numpy().astype("float64") for v in key_vars],
            model.queue.numpy().astype("float64"),
            0,
        )
        for step in range(2):
            x1 = rng.normal(size=(5, 3)).astype("float32")
            x2 = (x1 + rng.normal(0, 0.2, size=x1.shape)).astype("float32")
            history = model.fit(tf.data.Dataset.from_tensor_slices(((x1, x2),)).batch(5), verbose=0)
            state, loss = numpy_moco_step(state, x1.astype("float64"), x2.astype("float64"), 0.8, 0.5, 0.5)
            self.assertAllClose(history.history["loss"][0], loss, atol=1e-5, rtol=1e-5, msg=f"loss, step {step}")
            params_q, params_k, queue, pointer = state
            for v, expected in zip(model.encoder.weights + model.projection_head.weights, params_q):
                self.assertAllClose(v, expected, atol=1e-5, rtol=1e-5, msg=f"query {v.path}, step {step}")
            for v, expected in zip(key_vars, params_k):
                self.assertAllClose(v, expected, atol=1e-6, rtol=1e-6, msg=f"key {v.path}, step {step}")
            self.assertAllClose(model.queue, queue, atol=1e-5, rtol=1e-5, msg=f"queue, step {step}")
            self.assertEqual(int(model.queue_pointer.numpy()), pointer)
        self.assertEqual(pointer, 4)  # 5 + 5 keys in a queue of 6: rows 0-4, then 5, 0, 1, 2, 3

    def test_momentum_update_and_queue(self):
        model = self.build()
        v1, v2 = make_pairs(8)
        # The key encoder starts as a copy of the query encoder.
        for a, b in zip(model.key_encoder.weights, model.encoder.weights):
            self.assertAllClose(a, b, atol=0, rtol=0)
        keys_1 = normalize(model.projection_head(model.encoder(v2[:4])).numpy())
        queue_0 = model.queue.numpy()
        model.fit(pairs_dataset(v1[:4], v2[:4], 4), verbose=0)
        # Step 1: keys from theta_k = 0.9 theta_0 + 0.1 theta_0 = theta_0 enter rows 0..3.
        self.assertAllClose(model.queue.numpy()[:4], keys_1, atol=1e-5)
        self.assertAllClose(model.queue.numpy()[4:], queue_0[4:], atol=0)
        self.assertEqual(int(model.queue_pointer.numpy()), 4)
        query_1 = [w.numpy() for w in model.encoder.weights + model.projection_head.weights]
        key_1 = [w.numpy() for w in model.key_encoder.weights + model.key_projection_head.weights]
        keys_2 = normalize(model.key_projection_head(model.key_encoder(v2[4:])).numpy())
        model.fit(pairs_dataset(v1[4:], v2[4:], 4), verbose=0)
        # Step 2: theta_k = 0.9 theta_k + 0.1 theta_1 (before computing the keys).
        key_2 = [w.numpy() for w in model.key_encoder.weights + model.key_projection_head.weights]
        for k2, k1, q1 in zip(key_2, key_1, query_1):
            self.assertAllClose(k2, 0.9 * k1 + 0.1 * q1, atol=1e-6)
        ema_keys = []
        for k1, q1 in zip(key_1, query_1):
            ema_keys.append(0.9 * k1 + 0.1 * q1)
        model.key_encoder.set_weights(ema_keys[: len(model.key_encoder.weights)])
        model.key_projection_head.set_weights(ema_keys[len(model.key_encoder.weights) :])
        keys_2 = normalize(model.key_projection_head(model.key_encoder(v2[4:])).numpy())
        # Wrap-around: the 4 new keys fill rows 4, 5, 0, 1.
        queue = model.queue.numpy()
        self.assertAllClose(queue[[4, 5, 0, 1]], keys_2, atol=1e-5)
        self.assertAllClose(queue[2:4], keys_1[2:4], atol=1e-5)
        self.assertEqual(int(model.queue_pointer.numpy()), 2)
        # The key encoder receives no gradient: it is not trainable.
        key_ids = {id(v) for v in model.key_encoder.weights + model.key_projection_head.weights}
        self.assertFalse(any(id(v) in key_ids for v in model.trainable_variables))

    def test_batchnorm_key_encoder(self):
        model = self.build(encoder=make_bn_encoder(), bn_splits=1, queue_size=8)
        v1, v2 = make_pairs(8)
        # The key layers stay trainable (a Keras BatchNorm with trainable=False ignores
        # training=True); only their variables are out of the optimizer's set.
        self.assertTrue(model.key_encoder.get_layer("bn").trainable)
        key_ids = {id(v) for v in model.key_encoder.weights + model.key_projection_head.weights}
        self.assertFalse(any(id(v) in key_ids for v in model.trainable_variables))
        self.assertLen(
            model.trainable_variables,
            len(model.encoder.trainable_weights) + len(model.projection_head.trainable_weights),
        )
        pairs = model._momentum_pairs()
        for step, batch in enumerate((slice(0, 4), slice(4, 8))):
            key_before = [k.numpy() for k, _ in pairs]
            query_before = [q.numpy() for _, q in pairs]
            model.fit(pairs_dataset(v1[batch], v2[batch], 4), verbose=0)
            for (key, query), k0, q0 in zip(pairs, key_before, query_before):
                ema = 0.9 * k0 + 0.1 * q0
                if query.trainable:  # conv kernel, gamma, beta, head: EMA of the query, exactly
                    self.assertAllClose(key, ema, atol=1e-6, rtol=1e-6, msg=f"{key.path}, step {step}")
                else:  # moving statistics: the key branch's own, not an EMA of the query's
                    self.assertNotAllClose(key, ema, msg=f"{key.path} is an EMA, step {step}")
                    self.assertNotAllClose(key, query, msg=f"{key.path} equals the query's, step {step}")
            # They are what a training-mode pass of the (updated) key encoder on view_2 gives.
            reference = keras.models.clone_model(model.key_encoder)
            reference.set_weights(
                [k0 if "moving" in v.path else v.numpy() for v, k0 in zip(model.key_encoder.weights, key_before)]
            )
            reference(v2[batch], training=True)
            for v, r in zip(model.key_encoder.weights, reference.weights):
                self.assertAllClose(v, r, atol=1e-6, rtol=1e-5, msg=f"{v.path}, step {step}")
        # evaluate: inference mode on both sides (moving statistics), deterministic, changes nothing.
        before = [v.numpy() for v in model.weights]
        q = model.projection_head(model.encoder(v1, training=False), training=False).numpy()
        k = model.key_projection_head(model.key_encoder(v2, training=False), training=False).numpy()
        expected_loss, expected_accuracy = numpy_info_nce(q, k, model.queue.numpy(), 0.5)
        first = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
        second = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
        self.assertAllClose(first["loss"], expected_loss, atol=1e-5, rtol=1e-5)
        self.assertAllClose(first["contrastive_accuracy"], expected_accuracy, atol=1e-6)
        self.assertEqual(first, second)
        for v, b in zip(model.weights, before):
            self.assertAllClose(v, b, atol=0, rtol=0, msg=f"evaluate changed {v.path}")

    def test_bn_splits_keys_per_chunk(self):
        model = self.build(encoder=make_bn_encoder(), bn_splits=2, queue_size=8, seed=7)
        self.assertEqual(model.get_config()["bn_splits"], 2)
        v1, v2 = make_pairs(7)

        def keys_by_chunk(permutation):
            # Chunks of 4 and 3 examples of the permuted batch, each with its own statistics.
            expected = np.zeros((7, 4), "float32")
            for chunk in (permutation[:4], permutation[4:]):
                expected[chunk] = model.key_projection_head(model.key_encoder(v2[chunk], training=True)).numpy()
            return expected

        permutation = np.array([3, 6, 0, 5, 1, 2, 4])
        keys = model._split_keys(tf.constant(v2), tf.constant(permutation, "int32")).numpy()
        self.assertAllClose(keys, keys_by_chunk(permutation), atol=1e-5, rtol=1e-5)
        whole = model.key_projection_head(model.key_encoder(v2, training=True)).numpy()
        self.assertNotAllClose(keys, whole, atol=1e-3)  # per-chunk statistics do change the keys
        # The permutation of step t is a seeded random permutation, different per step.
        step_0 = model._key_permutation(7, 0).numpy()
        self.assertEqual(sorted(step_0.tolist()), list(range(7)))
        self.assertAllClose(step_0, model._key_permutation(7, 0), atol=0)
        self.assertNotAllClose(step_0, model._key_permutation(7, 1), atol=0)
        # fit uses it: the enqueued keys are the chunked keys of step 0's permutation.
        model.fit(pairs_dataset(v1, v2, 7), verbose=0)
        self.assertAllClose(model.queue.numpy()[:7], normalize(keys_by_chunk(step_0)), atol=1e-5, rtol=1e-5)

    def test_save_resume_and_export_after_reload(self):
        # BatchNorm key encoder shuffled over 2 splits: the queue and the seeded shuffle resume
        # identically after a reload. Export straight after fit: the model zoo
        # (tests/reliability/test_resume.py).
        model = self.build(encoder=make_bn_encoder(), bn_splits=2, seed=5)
        v1, v2 = make_pairs(8)
        data = pairs_dataset(v1, v2, 4)
        self.run_fit_test(model, data)
        reloaded = self.run_serialization_test(model, v1, export_reloaded=True)
        self.assertEqual((reloaded.bn_splits, reloaded.seed), (2, 5))
        self.assertAllClose(reloaded.queue, model.queue, atol=0)
        self.assertEqual(int(reloaded.queue_pointer.numpy()), int(model.queue_pointer.numpy()))
        model.fit(data, epochs=2, verbose=0)
        reloaded.fit(data, epochs=2, verbose=0)
        for a, b in zip(model.weights, reloaded.weights):
            self.assertAllClose(b, a, atol=1e-6, rtol=1e-6, msg=a.path)

    def test_nan_is_reported_and_stops_training(self):
        v1, v2 = make_pairs(16)
        bad = v1.copy()
        bad[0, 3, 3, 0] = np.nan
        assert_nan_is_reported(
            self,
            lambda: self.build(encoder=nan_hiding_encoder(), queue_size=16),
            pairs_dataset(bad, v2, 4),
            pairs_dataset(v1, v2, 4),
        )

    def test_mixed_precision_and_augmenter(self):
        v1, v2 = make_pairs(4)
        self.run_mixed_precision_test(lambda: self.build(make_bn_encoder(), temperature=0.05), pairs_dataset(v1, v2, 4))
        model = self.build(augmenter=SimCLRAugmentation(8, blur_probability=0.0))
        history = model.fit(v1, batch_size=4, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    @pytest.mark.compiled
    def test_errors(self):
        encoder = make_encoder()
        self.assertRaisesValueError(["`queue_size` must be a positive", "queue_size=0"], MoCo, encoder, queue_size=0)
        self.assertRaisesValueError(["`momentum`", "momentum=1.0"], MoCo, encoder, momentum=1.0)
        self.assertRaisesValueError("temperature=0", MoCo, encoder, temperature=0)
        self.assertRaisesValueError("projection_dim=-1", MoCo, encoder, projection_dim=-1)
        self.assertRaisesValueError(
            "`bn_splits` must be a positive integer. Received: bn_splits=0", MoCo, encoder, bn_splits=0
        )
        self.assertRaisesValueError(
            ["`bn_splits` must be a positive integer", "bn_splits=2.0"], MoCo, encoder, bn_splits=2.0
        )
        self.assertRaisesValueError(["`seed` must be a non-negative integer", "seed=-1"], MoCo, encoder, seed=-1)
        # A batch smaller than bn_splits: no statistics for some chunk -> a clear error.
        v1, v2 = make_pairs(3)
        split = self.build(bn_splits=4)
        static = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(3, drop_remainder=True)
        self.assertRaisesValueError(
            ["`bn_splits` must be <= the batch size", "bn_splits=4", "batch of 3", "drop_remainder=True"],
            split.fit,
            static,
            verbose=0,
        )
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "`bn_splits` must be <= the batch size"):
            split.fit(pairs_dataset(v1, v2, 3), verbose=0)
        # evaluate does not split the batch: it works on any batch size.
        self.assertTrue(np.isfinite(split.evaluate(pairs_dataset(v1, v2, 3), verbose=0, return_dict=True)["loss"]))
        model = self.build(queue_size=3)
        v1, v2 = make_pairs(4)
        static = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(4, drop_remainder=True)
        self.assertRaisesValueError(
            ["`queue_size` must be >= the batch size", "queue_size=3", "batch of 4"], model.fit, static, verbose=0
        )
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "queue_size` must be >= the batch size"):
            model.fit(pairs_dataset(v1, v2, 4), verbose=0)
        self.assertRaisesValueError(
            ["rank 4", "x[..., None]"], self.build().fit, pairs_dataset(v1[..., 0], v2[..., 0], 2), verbose=0
        )
