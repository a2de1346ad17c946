import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import recipes
from keras_transfer.models import AnchoredFineTuning
from tests.test_case import TestCase


def small_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", name="features"),
            keras.layers.Dense(2, name="head"),
        ]
    )


def cnn_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return recipes.build_classifier("simple_cnn", 3, (8, 8, 1), widths=(4, 4, 4), activation=None)


def numpy_penalty(weights, anchors, head, alpha, beta, fisher=None):
    """The penalty and its gradients (anchored, head) in closed form."""
    fisher = fisher or [np.ones_like(a) for a in anchors]
    value = sum(0.5 * alpha * np.sum(f * (w - a) ** 2) for w, a, f in zip(weights, anchors, fisher))
    value += sum(0.5 * beta * np.sum(h**2) for h in head)
    grads = [alpha * f * (w - a) for w, a, f in zip(weights, anchors, fisher)] + [beta * h for h in head]
    return value, grads


class AnchoredFineTuningTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.x = rng.normal(size=(8, 4)).astype("float32")
        cls.y = rng.integers(0, 2, size=8)
        cls.fisher = [rng.uniform(0.1, 2.0, size=s).astype("float32") for s in ((4, 3), (3,))]
        cls.images = rng.uniform(0, 255, size=(6, 8, 8, 1)).astype("float32")
        cls.labels = np.arange(6) % 3

    def build(self, method="ewc", alpha=0.7, beta=0.3, seed=0):
        fisher = self.fisher if method == "ewc" else None
        return AnchoredFineTuning(small_classifier(seed), method, alpha=alpha, beta=beta, fisher=fisher)

    def moved(self, model, seed=1):
        """Moves every classifier weight away from the anchors."""
        rng = np.random.default_rng(seed)
        for v in model.classifier.trainable_variables:
            v.assign(v.numpy() + rng.normal(size=v.shape).astype("float32"))
        return model

    def test_penalty_value_and_gradient_match_numpy(self):
        for method in ("l2_sp", "ewc"):
            model = self.build(method)
            anchors = [v.numpy() for v in model.anchored_variables]
            self.assertEqual([v.name for v in model.head_variables], ["kernel", "bias"])
            head_layer = model.classifier.layers[-1]
            self.assertEqual([id(v) for v in model.head_variables], [id(v) for v in head_layer.weights])
            self.assertAllClose(model.penalty(), 0.5 * 0.3 * sum(np.sum(v.numpy() ** 2) for v in model.head_variables))
            self.moved(model)
            weights = [v.numpy() for v in model.anchored_variables]
            head = [v.numpy() for v in model.head_variables]
            fisher = self.fisher if method == "ewc" else None
            value, grads = numpy_penalty(weights, anchors, head, 0.7, 0.3, fisher)
            self.assertAllClose(model.penalty(), value, rtol=1e-5)
            variables = model.anchored_variables + model.head_variables
            with tf.GradientTape() as tape:
                penalty = model.penalty()
            for g, e in zip(tape.gradient(penalty, variables), grads):
                self.assertAllClose(g, e, rtol=1e-5, atol=1e-6)
            self.run_gradient_check(lambda *values: tf.cast(model.penalty(values), "float64"), weights + head, eps=1e-2)

    def test_sgd_step_adds_the_penalty_gradient(self):
        model = self.moved(self.build("ewc"))
        classifier = model.classifier
        variables = model.anchored_variables + model.head_variables
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            loss = cross_entropy(self.y, classifier(self.x, training=True))
        ce_grads = [g.numpy() for g in tape.gradient(loss, variables)]
        anchors = [a.numpy() for a in model.anchors]
        before = [v.numpy() for v in variables]
        value, grads = numpy_penalty(before[:2], anchors, before[2:], 0.7, 0.3, self.fisher)

        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=cross_entropy, metrics=["accuracy"])
        history = model.fit(self.x, self.y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        self.assertEqual(sorted(history), ["accuracy", "loss", "penalty"])
        self.assertAllClose(history["penalty"][0], value, rtol=1e-5)
        self.assertAllClose(history["loss"][0], float(loss) + value, rtol=1e-5)
        for v, w, g, p in zip(variables, before, ce_grads, grads):
            self.assertAllClose(v.numpy(), w - 0.1 * (g + p), rtol=1e-5, atol=1e-6)
        # The anchors and the Fisher did not move.
        for a, e in zip(model.anchors, anchors):
            self.assertAllClose(a, e, atol=0, rtol=0)
        self.assertAllClose(model.fisher[0], self.fisher[0], atol=0, rtol=0)

    def test_predict_is_the_classifier_and_round_trip_keeps_anchors(self):
        model = self.moved(self.build("ewc"))
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(self.x, self.y, epochs=1, verbose=0)
        self.assertAllClose(model.predict(self.x, verbose=0), model.classifier.predict(self.x, verbose=0))
        reloaded = self.run_serialization_test(model, self.x)
        self.assertAllClose(reloaded.penalty(), model.penalty(), rtol=1e-6)
        self.assertEqual((reloaded.method, reloaded.alpha, reloaded.beta), ("ewc", 0.7, 0.3))
        self.run_export_test(model, self.x)

    def test_resume_is_exact(self):
        def compiled():
            model = self.moved(self.build("l2_sp"))
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        straight = compiled()
        straight.fit(self.x, self.y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        first = compiled()
        first.fit(self.x, self.y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        path = os.path.join(self.get_temp_dir(), "half.keras")
        first.save(path)
        resumed = keras.saving.load_model(path)
        resumed.fit(self.x, self.y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(straight.weights, resumed.weights):
            self.assertAllClose(b, a, atol=1e-6, rtol=1e-6, msg=a.path)

    def test_build_classifier_fit_export_and_mixed_precision(self):
        def build_and_compile():
            classifier = cnn_classifier()
            model = AnchoredFineTuning(classifier, "l2_sp", alpha=0.1, beta=0.01)
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        model = build_and_compile()
        backbone = recipes.get_backbone(model.classifier)
        self.assertEqual([id(v) for v in model.anchored_variables], [id(v) for v in backbone.trainable_variables])
        self.run_fit_test(model, self.images, self.labels, batch_size=6)
        self.run_fit_then_export_test(build_and_compile, self.images, self.images, self.labels, batch_size=6)
        mixed, history = self.run_mixed_precision_test(build_and_compile, self.images, self.labels, batch_size=6)
        self.assertEqual(mixed.classifier.get_layer("head").compute_dtype, "float32")
        self.assertGreater(history.history["penalty"][0], 0.0)

    def test_errors(self):
        classifier = small_classifier()
        message = self.assertRaisesValueError(
            ["`fisher` must be given for method='ewc'", "Received: fisher=None", "keras_transfer.ops.diagonal_fisher("],
            AnchoredFineTuning,
            classifier,
            "ewc",
        )
        self.assertIn("feature_extractor(source_model)", message)
        self.assertRaisesValueError(
            ["`fisher` must hold one array per anchored variable", "[(4, 3), (3,)]", "[(4, 3)]"],
            AnchoredFineTuning,
            classifier,
            "ewc",
            fisher=self.fisher[:1],
        )
        negative = [-f for f in self.fisher]
        self.assertRaisesValueError("non-negative", AnchoredFineTuning, classifier, "ewc", fisher=negative)
        self.assertRaisesValueError(["`alpha`", "Received: alpha=-1.0"], AnchoredFineTuning, classifier, alpha=-1.0)
        self.assertRaisesValueError(["`beta`", "Received: beta=-0.5"], AnchoredFineTuning, classifier, beta=-0.5)
        self.assertRaisesValueError(["`method`", "'lwf2'"], AnchoredFineTuning, classifier, "lwf2")
        self.assertRaisesValueError(["`head`", "'classifier'"], AnchoredFineTuning, classifier, head="classifier")
        self.assertRaisesValueError("`classifier` must be a built", AnchoredFineTuning, keras.layers.Dense(2))
