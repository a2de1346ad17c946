import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import ProtoNet
from tests.models._terminate_on_nan import assert_terminates_on_nan
from tests.test_case import TestCase


def episodes(e=2, n=3, k=2, q=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(e, n * k, d)).astype("float32")
    sy = np.tile(np.repeat(np.arange(n), k), (e, 1)).astype("int64")
    qx = rng.normal(size=(e, q, d)).astype("float32")
    qy = rng.integers(0, n, size=(e, q)).astype("int64")
    return (sx, sy, qx), qy


def encoder(d=5):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(4, activation="tanh")])


class ProtoNetTest(TestCase):
    def build(self, **kwargs):
        keras.utils.set_random_seed(0)
        model = ProtoNet(encoder(), n_way=3, **kwargs)
        model.compile(
            optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
        )
        return model

    def test_logits_match_numpy(self):
        model = self.build()
        (sx, sy, qx), qy = episodes()
        logits = model.predict((sx, sy, qx), verbose=0)
        w, b = [v.numpy() for v in model.encoder.weights]
        for e in range(2):
            zs, zq = np.tanh(sx[e] @ w + b), np.tanh(qx[e] @ w + b)
            protos = np.stack([zs[sy[e] == c].mean(0) for c in range(3)])
            expected = -((zq[:, None, :] - protos[None]) ** 2).sum(-1)
            self.assertAllClose(logits[e], expected, atol=1e-5)
        cosine = self.build(distance="cosine", temperature=0.5)
        out = cosine.predict((sx, sy, qx), verbose=0)
        self.assertTrue(np.all(np.abs(out) <= 2.0 + 1e-5))

    def test_gradients_fit_save_export_mixed_precision(self):
        model = self.build()
        x, y = episodes(e=4)
        self.run_fit_test(model, x, y, batch_size=2, steps=2)
        self.run_serialization_test(model, x)
        self.run_export_test(model, x)
        self.run_mixed_precision_test(self.build, x, y, batch_size=2)

        def loss_of_support(sx):
            protos = model.prototypes(sx, tf.constant(x[1][:1]))
            return tf.reduce_sum(tf.sin(protos) * tf.range(1.0, 5.0, dtype="float64"))

        self.run_gradient_check(loss_of_support, [np.random.default_rng(1).normal(size=(1, 6, 4))])

    def test_export_straight_after_fit_and_reload_takes_int64_labels(self):
        x, y = episodes(e=4)
        self.assertEqual(x[1].dtype, np.int64)  # as sample_episodes and NumPy give them
        model, reloaded = self.run_fit_then_export_test(self.build, x, x, fit_y=y, batch_size=2)
        # Any number of tasks, shots and queries; the dict form; inputs named as call's keys.
        import os

        path = os.path.join(self.get_temp_dir(), "exported")
        reloaded.export(path, verbose=False)
        restored = tf.saved_model.load(path)
        (sx, sy, qx), _ = episodes(e=3, k=3, q=2)
        self.assertAllClose(restored.serve((sx, sy, qx)), reloaded.predict((sx, sy, qx), verbose=0), atol=1e-5)
        outputs = restored.signatures["serving_default"](support_x=sx, support_y=sy, query_x=qx)
        self.assertAllClose(next(iter(outputs.values())), reloaded.predict((sx, sy, qx), verbose=0), atol=1e-5)
        as_dict = self.build()
        as_dict.fit({"support_x": x[0], "support_y": x[1], "query_x": x[2]}, y, batch_size=2, epochs=1, verbose=0)
        path = os.path.join(self.get_temp_dir(), "dict")
        as_dict.export(path, verbose=False)
        restored = tf.saved_model.load(path)
        self.assertAllClose(
            restored.serve({"support_x": sx, "support_y": sy, "query_x": qx}),
            as_dict.predict((sx, sy, qx), verbose=0),
            atol=1e-5,
        )

    def test_export_of_a_model_never_called_on_episodes(self):
        import os

        # A declared encoder Input is enough: any episode shape is served.
        model = self.build()
        sig = model.serving_input_signature()[0]
        self.assertEqual([tuple(s.shape) for s in sig], [(None, None, 5), (None, None), (None, None, 5)])
        self.assertEqual([s.dtype for s in sig], ["float32", "int64", "float32"])
        # A subclassed/plain encoder layer without an Input: the shape is unknown.
        unknown = ProtoNet(keras.layers.Dense(4), n_way=3)
        self.assertRaisesValueError(
            ["`ProtoNet.export()` needs the shape of the episodes", "input_signature"],
            unknown.export,
            os.path.join(self.get_temp_dir(), "x"),
        )

    def test_terminate_on_nan_and_no_finite_metric_with_nan_weights(self):
        x, y = episodes(e=4)
        bad = (x[0].copy(), x[1], x[2])
        bad[0][0, 0, 0] = np.nan
        assert_terminates_on_nan(self, self.build(), bad, y, stop_batch=0, batch_size=2)
        # Divergence (a linear encoder: tanh would saturate instead of overflowing).
        model = ProtoNet(keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)]), n_way=3)
        model.compile(
            optimizer=keras.optimizers.SGD(1e30),
            metrics=["accuracy"],
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        assert_terminates_on_nan(self, model, *episodes(e=16), batch_size=2)
        # Evaluate with NaN weights: NaN accuracy, not the accuracy of argmax 0.
        logs = model.evaluate(x, y, verbose=0, return_dict=True)
        self.assertTrue(all(np.isnan(v) for v in logs.values()), logs)

    def test_errors(self):
        self.assertRaisesValueError("n_way", ProtoNet, encoder(), n_way=1)
        self.assertRaisesValueError("distance", ProtoNet, encoder(), n_way=3, distance="l1")
        model = self.build()
        (sx, sy, qx), _ = episodes()
        self.assertRaisesValueError("same feature shape", model, (sx, sy, qx[..., :3]))
