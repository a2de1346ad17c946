"""recipes.distill: the loss against NumPy, gradients, frozen teacher, mixed precision, saving, export, errors."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import losses
from keras_transfer import models
from keras_transfer import recipes
from tests.test_case import TestCase

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 4)).astype("float32")
Y = RNG.integers(0, 3, size=12)
FEATURES = {"features": "features"}


def mlp(hidden=5, classes=3, name=None, activation=None):
    inputs = keras.Input((4,), name="x")
    features = keras.layers.Dense(hidden, activation="tanh", name="features")(inputs)
    outputs = keras.layers.Dense(classes, activation=activation, name="logits")(features)
    return keras.Model(inputs, outputs, name=name)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def reference_loss(t_logits, s_logits, y, temperature, alpha, t_feat=None, s_feat=None, feature_weight=0.0):
    """alpha * CE(y, s) + (1 - alpha) * (T^2 KL(softmax(t/T) || softmax(s/T)) + w * mse(features)), in float64."""
    t_logits, s_logits = np.float64(t_logits), np.float64(s_logits)
    hard = -log_softmax(s_logits)[np.arange(len(y)), y].mean() if y is not None else 0.0
    log_p, log_q = log_softmax(t_logits / temperature), log_softmax(s_logits / temperature)
    soft = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1).mean() * temperature**2
    feature = ((np.float64(t_feat) - np.float64(s_feat)) ** 2).mean() if t_feat is not None else 0.0
    return alpha * hard + (1 - alpha) * (soft + feature_weight * feature)


def features_of(model, x):
    return keras.Model(model.inputs, model.get_layer("features").output)(x).numpy()


class DistillTest(TestCase):
    def test_loss_matches_numpy(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        distiller = recipes.distill(
            teacher, student, temperature=2.5, alpha=0.3, feature_layers={"features": "features"}, feature_weight=0.7
        )
        distiller.compile(optimizer="sgd")
        loss = distiller.compute_loss(X, Y, y_pred=student(X))
        t_logits, s_logits = teacher(X).numpy(), student(X).numpy()
        t_feat, s_feat = features_of(teacher, X), features_of(student, X)
        expected = reference_loss(t_logits, s_logits, Y, 2.5, 0.3, t_feat, s_feat, 0.7)
        self.assertAllClose(loss, expected, atol=1e-5, rtol=1e-5)
        # Without labels the hard-label term is left out, the rest still weighted 1 - alpha.
        unlabelled = distiller.compute_loss(X, None, y_pred=student(X))
        self.assertAllClose(unlabelled, reference_loss(t_logits, s_logits, None, 2.5, 0.3, t_feat, s_feat, 0.7), 1e-5)

    def test_gradient_matches_finite_differences(self):
        keras.config.set_dtype_policy("float64")
        teacher, student = mlp(hidden=3, name="teacher"), mlp(hidden=3, name="student")
        distiller = recipes.distill(teacher, student, temperature=3.0, alpha=0.4, feature_layers=[("features",) * 2])
        # A float64 hard-label loss (Keras losses compute in floatx() = float32 by default).
        distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True, dtype="float64"))
        x, y = np.float64(X[:5]), Y[:5]
        with tf.GradientTape() as tape:
            loss = distiller.compute_loss(x, y, y_pred=student(x))
        analytic = tape.gradient(loss, student.trainable_variables)
        eps = 1e-6
        for variable, grad in zip(student.trainable_variables, analytic):
            base = variable.numpy()
            numeric = np.zeros_like(base).reshape(-1)
            for j in range(base.size):
                values = []
                for step in (eps, -eps):
                    moved = base.copy().reshape(-1)
                    moved[j] += step
                    variable.assign(moved.reshape(base.shape))
                    values.append(float(distiller.compute_loss(x, y, y_pred=student(x))))
                numeric[j] = (values[0] - values[1]) / (2 * eps)
            variable.assign(base)
            self.assertAllClose(grad, numeric.reshape(base.shape), atol=1e-7, rtol=1e-6, msg=variable.path)

    def test_fit_on_dataset_trains_student_only(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        distiller = recipes.distill(teacher, student, feature_layers=FEATURES)
        distiller.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"])
        self.assertEqual(len(distiller.trainable_weights), len(student.trainable_weights))
        dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)
        history = self.run_fit_test(distiller, dataset, steps=3, frozen=[teacher])
        self.assertEqual({"accuracy", "distillation_loss", "student_loss", "total_loss", "loss"}, set(history.history))
        self.assertTrue(teacher.trainable is False)

    def test_fit_without_labels_with_compiled_metrics(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        distiller = recipes.distill(teacher, student, alpha=0.0)
        distiller.compile(optimizer="adam", metrics=["accuracy"])
        history = self.run_fit_test(distiller, X, steps=2, frozen=[teacher])
        self.assertEqual({"distillation_loss", "student_loss", "total_loss", "loss"}, set(history.history))
        self.assertEqual(history.history["student_loss"], [0.0, 0.0])
        self.assertIn("accuracy", distiller.evaluate(X, Y, verbose=0, return_dict=True))

    def test_softmax_teacher_is_distilled_through_its_logits(self):
        keras.utils.set_random_seed(3)
        teacher = recipes.build_classifier("simple_cnn", 3, (8, 8, 1), widths=(4, 4, 4), dropout=0.0)
        student = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        images = RNG.uniform(0, 255, size=(6, 8, 8, 1)).astype("float32")
        before = [w.copy() for w in teacher.get_weights()]
        distiller = recipes.distill(teacher, student, temperature=2.0, alpha=0.0)
        self.assertIsNot(distiller.teacher, teacher)
        self.assertTrue(teacher.trainable)
        logits = distiller.teacher(images).numpy()
        self.assertAllClose(keras.ops.softmax(logits), teacher(images), atol=1e-6)
        distiller.compile(optimizer="adam")
        loss = distiller.compute_loss(images, None, y_pred=student(images))
        self.assertAllClose(loss, reference_loss(logits, student(images).numpy(), None, 2.0, 0.0), atol=1e-5)
        distiller.fit(images, epochs=1, verbose=0)
        for a, b in zip(before, teacher.get_weights()):
            self.assertAllClose(b, a, atol=0, rtol=0)

    def test_softmax_layer_teacher_shares_its_weights(self):
        teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax()])
        distiller = recipes.distill(teacher, mlp(), temperature=2.0)
        self.assertAllClose(keras.ops.softmax(distiller.teacher(X)), teacher(X), atol=1e-6)
        self.assertIs(distiller.teacher.layers[-1].kernel, teacher.layers[0].kernel)

    def test_mixed_float16_step(self):
        def build_and_compile():
            distiller = recipes.distill(mlp(name="teacher"), mlp(name="student"), feature_layers=FEATURES)
            distiller.compile(optimizer="adam")
            return distiller

        distiller, _ = self.run_mixed_precision_test(build_and_compile, X, Y, batch_size=6, steps=2)
        self.assertEqual(distiller.student.get_layer("logits").compute_dtype, "float16")
        loss = distiller.compute_loss(X, Y, y_pred=distiller.student(X))
        self.assertEqual(keras.backend.standardize_dtype(loss.dtype), "float32")

    def test_keras_round_trip_reloads_compiled_and_trains_on(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        distiller = recipes.distill(teacher, student, temperature=3.0, alpha=0.2, feature_layers=FEATURES)
        distiller.compile(optimizer=keras.optimizers.Adam(0.01))
        distiller.fit(X, Y, batch_size=6, epochs=1, verbose=0)
        reloaded = self.run_serialization_test(distiller, X)
        self.assertIsInstance(reloaded, models.KnowledgeDistiller)
        self.assertIsInstance(reloaded.distillation_losses[0], losses.SoftTargetDistillation)
        self.assertFalse(reloaded.teacher.trainable)
        self.assertEqual(int(reloaded.optimizer.iterations), 2)
        expected = float(distiller.compute_loss(X, Y, y_pred=distiller(X)))
        self.assertAllClose(reloaded.compute_loss(X, Y, y_pred=reloaded(X)), expected, atol=1e-6)
        reloaded.fit(X, Y, batch_size=6, epochs=1, verbose=0)
        self.assertEqual(int(reloaded.optimizer.iterations), 4)

    def test_student_exports_and_round_trips_on_its_own(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        distiller = recipes.distill(teacher, student)
        distiller.compile(optimizer="adam")
        distiller.fit(X, Y, batch_size=6, epochs=1, verbose=0)
        trained = distiller.student
        self.assertIs(trained, student)
        self.assertNotIsInstance(trained, keras.distillation.Distiller)
        self.run_serialization_test(trained, X)
        self.run_export_test(trained, X)
        self.run_export_test(distiller, X)  # the distiller's serve is the student's

    def test_errors(self):
        teacher, student = mlp(name="teacher"), mlp(name="student")
        self.assertRaisesValueError(
            "`temperature` must be a positive finite number. Received: temperature=0",
            recipes.distill,
            teacher,
            student,
            temperature=0,
        )
        self.assertRaisesValueError("Received: alpha=1.5", recipes.distill, teacher, student, alpha=1.5)
        self.assertRaisesValueError("Received: alpha=-0.1", recipes.distill, teacher, student, alpha=-0.1)
        self.assertRaisesValueError(
            ["`student` must have the teacher's output shape", "(None, 4)", "(None, 3)"],
            recipes.distill,
            teacher,
            mlp(classes=4),
        )
        self.assertRaisesValueError(
            ["`student` must be built", "Received: student="],
            recipes.distill,
            teacher,
            keras.Sequential([keras.layers.Dense(3)]),
        )
        self.assertRaisesValueError(
            ["`feature_layers` must name top-level layers of the student", "'hidden'", "'features'"],
            recipes.distill,
            teacher,
            student,
            feature_layers={"features": "hidden"},
        )
        self.assertRaisesValueError(
            ["`feature_layers` must pair layers whose outputs have the same shape", "(5,)", "(2,)", "'auto'"],
            recipes.distill,
            teacher,
            mlp(hidden=2),
            feature_layers={"features": "features"},
            feature_projection=False,
        )
        folded = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(6), keras.layers.Reshape((2, 3), name="features")]
            + [keras.layers.Flatten(), keras.layers.Dense(3)]
        )
        self.assertRaisesValueError(
            ["up to the last axis", "(5,)", "(2, 3)", "same spatial size"],
            recipes.distill,
            teacher,
            folded,
            feature_layers=FEATURES,
        )
        self.assertRaisesValueError(
            ["`feature_projection`", "'yes'"], recipes.distill, teacher, student, feature_projection="yes"
        )
        self.assertRaisesValueError("`student` must return logits", recipes.distill, teacher, mlp(activation="softmax"))
        self.assertRaisesValueError("`teacher` must be a keras.Model", recipes.distill, "teacher", student)


class ProjectedFeaturesTest(TestCase):
    """Features of different widths (teacher 5, student 2): a learned Dense map, FitNets' regressor."""

    def build(self, **kwargs):
        keras.utils.set_random_seed(1)
        teacher, student = mlp(hidden=5, name="teacher"), mlp(hidden=2, name="student")
        distiller = recipes.distill(teacher, student, feature_layers=FEATURES, **kwargs)
        distiller.compile(optimizer=keras.optimizers.Adam(0.05))
        return teacher, student, distiller

    def test_loss_and_projection_gradient_match_numpy(self):
        teacher, student, distiller = self.build(temperature=2.0, alpha=0.3, feature_weight=0.7)
        (projection,) = distiller.feature_projections
        self.assertIsInstance(distiller.distillation_losses[1], losses.ProjectedFeatureDistillation)
        kernel = RNG.normal(size=(2, 5)).astype("float32")
        bias = RNG.normal(size=5).astype("float32")
        projection.set_weights([kernel, bias])
        t_feat, s_feat = np.float64(features_of(teacher, X)), np.float64(features_of(student, X))
        projected = s_feat @ kernel + bias
        with tf.GradientTape() as tape:
            loss = distiller.compute_loss(X, Y, y_pred=student(X))
        expected = reference_loss(teacher(X).numpy(), student(X).numpy(), Y, 2.0, 0.3, t_feat, projected, 0.7)
        self.assertAllClose(loss, expected, atol=1e-5, rtol=1e-5)
        # d loss / d W = (1 - alpha) * w * 2 / (N * D) * s^T (s W + b - t)
        grad_kernel, grad_bias = tape.gradient(loss, [projection.kernel, projection.bias])
        scale = 0.7 * 0.7 * 2 / t_feat.size
        self.assertAllClose(grad_kernel, scale * s_feat.T @ (projected - t_feat), atol=1e-5, rtol=1e-4)
        self.assertAllClose(grad_bias, scale * (projected - t_feat).sum(axis=0), atol=1e-5, rtol=1e-4)

    def test_projection_trains_with_the_student_and_round_trips(self):
        teacher, student, distiller = self.build()
        self.assertEqual(len(distiller.trainable_weights), len(student.trainable_weights) + 2)
        (projection,) = distiller.feature_projections
        before = [w.copy() for w in projection.get_weights()]
        self.run_fit_test(distiller, tf.data.Dataset.from_tensor_slices((X, Y)).batch(6), steps=2, frozen=[teacher])
        for a, b in zip(before, projection.get_weights()):
            self.assertGreater(np.abs(a - b).max(), 0)
        self.assertNotIn(projection.kernel.path, [w.path for w in student.weights])  # the student stays plain
        reloaded = self.run_serialization_test(distiller, X)
        for a, b in zip(projection.get_weights(), reloaded.feature_projections[0].get_weights()):
            self.assertAllClose(b, a, atol=0, rtol=0)
        expected = float(distiller.compute_loss(X, Y, y_pred=distiller(X)))
        self.assertAllClose(reloaded.compute_loss(X, Y, y_pred=reloaded(X)), expected, atol=1e-6)
        reloaded.fit(X, Y, batch_size=6, epochs=1, verbose=0)
        self.assertEqual(int(reloaded.optimizer.iterations), 4)

    def test_equal_widths_project_only_when_asked(self):
        for projection, expected in (
            ("auto", keras.distillation.FeatureDistillation),
            (True, losses.ProjectedFeatureDistillation),
        ):
            distiller = recipes.distill(mlp(), mlp(), feature_layers=FEATURES, feature_projection=projection)
            self.assertIs(type(distiller.distillation_losses[1]), expected)
            self.assertEqual(len(distiller.feature_projections), int(projection is True))

    def test_mixed_float16_step(self):
        distiller, _ = self.run_mixed_precision_test(lambda: self.build()[2], X, Y, batch_size=6, steps=2)
        self.assertEqual(distiller.feature_projections[0].compute_dtype, "float32")
        loss = distiller.compute_loss(X, Y, y_pred=distiller.student(X))
        self.assertEqual(keras.backend.standardize_dtype(loss.dtype), "float32")
