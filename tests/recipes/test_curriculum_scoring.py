import keras
import numpy as np

from keras_transfer.models import SourceOnly
from keras_transfer.recipes import loss_difficulty
from keras_transfer.recipes import transfer_difficulty
from tests.test_case import TestCase


def numpy_cross_entropy(logits, y):
    logits = np.asarray(logits, "float64")
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def blobs():
    """Two classes on a line: easy (far, right label), hard (near the boundary), mislabelled (far, wrong label)."""
    rng = np.random.default_rng(0)
    easy = np.r_[rng.uniform(-4, -2.5, 20), rng.uniform(2.5, 4, 20)]
    hard = np.r_[rng.uniform(-0.4, -0.05, 10), rng.uniform(0.05, 0.4, 10)]
    wrong = np.r_[rng.uniform(-4, -2.5, 3), rng.uniform(2.5, 4, 3)]
    position = np.r_[easy, hard, wrong]
    y = np.r_[(easy > 0), (hard > 0), (wrong < 0)].astype("int64")
    x = np.stack([position, rng.normal(scale=0.1, size=len(position))], axis=1).astype("float32")
    groups = np.r_[np.zeros(40), np.ones(20), np.full(6, 2)].astype(int)
    return x, y, groups


class LossDifficultyTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x = np.random.default_rng(1).normal(size=(30, 4)).astype("float32")
        self.y = np.arange(30) % 3
        self.model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    def reference(self):
        kernel, bias = self.model.get_weights()
        return numpy_cross_entropy(self.x.astype("float64") @ kernel + bias, self.y)

    def test_matches_numpy_cross_entropy(self):
        explicit = loss_difficulty(
            self.model, self.x, self.y, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        self.assertEqual((explicit.shape, explicit.dtype), ((30,), np.float64))
        self.assertAllClose(explicit, self.reference(), atol=1e-5, rtol=1e-5)
        self.model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.assertAllClose(loss_difficulty(self.model, self.x, self.y, batch_size=7), explicit, atol=1e-6)
        # A loss name is a per-example function already (probabilities: softmax first).
        probabilities = keras.Sequential([self.model, keras.layers.Softmax()])
        by_name = loss_difficulty(probabilities, self.x, self.y, loss="sparse_categorical_crossentropy")
        self.assertAllClose(by_name, explicit, atol=1e-5)

    def test_custom_step_model_uses_its_from_logits(self):
        fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
        model = SourceOnly(fe, keras.layers.Dense(3), from_logits=True)
        f_kernel, f_bias, kernel, bias = model.get_weights()
        logits = (self.x.astype("float64") @ f_kernel + f_bias) @ kernel + bias
        self.assertAllClose(loss_difficulty(model, self.x, self.y), numpy_cross_entropy(logits, self.y), atol=1e-5)

    def test_errors(self):
        self.assertRaisesValueError(["`loss` must be given", "loss=None"], loss_difficulty, self.model, self.x, self.y)
        self.model.set_weights([np.full((4, 3), np.nan, "float32"), np.zeros(3, "float32")])
        self.assertRaisesValueError(
            ["finite loss on every example", "30 NaN"],
            loss_difficulty,
            self.model,
            self.x,
            self.y,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.assertRaisesValueError("len(y)=29", loss_difficulty, self.model, self.x, self.y[:29], loss="mse")


class TransferDifficultyTest(TestCase):
    def test_confidently_correct_examples_come_first(self):
        x, y, groups = blobs()
        features = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
        scores = transfer_difficulty(features, x, y, C=1.0)
        rank = np.empty(len(scores), int)
        rank[np.argsort(scores, kind="stable")] = np.arange(len(scores))
        # easy < hard (near the boundary) < mislabelled
        self.assertLess(rank[groups == 0].max(), rank[groups == 1].min())
        self.assertLess(rank[groups == 1].max(), rank[groups == 2].min())
        # Independent reference: scikit-learn's standardised logistic regression, -log p(y | x).
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000))
        reference.fit(x.astype("float64"), y)
        expected = -np.log(reference.predict_proba(x.astype("float64"))[np.arange(len(y)), y])
        self.assertAllClose(scores, expected, atol=2e-4, rtol=2e-4)

    def test_cross_fitting_scores_each_example_by_a_classifier_fitted_without_it(self):
        x, y, groups = blobs()
        features = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
        held_out = transfer_difficulty(features, x, y, C=1.0, folds=3, seed=0)
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        expected = np.empty(len(y))
        for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(x, y):
            reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000))
            reference.fit(x[train].astype("float64"), y[train])
            expected[test] = -np.log(reference.predict_proba(x[test].astype("float64"))[np.arange(len(test)), y[test]])
        self.assertAllClose(held_out, expected, atol=2e-4, rtol=2e-4)
        rank = np.argsort(np.argsort(held_out, kind="stable"))
        self.assertLess(rank[groups == 1].max(), rank[groups == 2].min())

    def test_errors(self):
        x, y, _ = blobs()
        features = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
        self.assertRaisesValueError(
            ["`folds` must be at most the size of the smallest class (33)", "folds=34"],
            transfer_difficulty,
            features,
            x,
            y,
            folds=34,
        )
        self.assertRaisesValueError("Received: folds=1", transfer_difficulty, features, x, y, folds=1)
        self.assertRaisesValueError("class ids in [0, 2)", transfer_difficulty, features, x, y + 1, num_classes=2)
