import os

import keras
import numpy as np

from keras_transfer import ops
from keras_transfer.datasets import load_digits
from keras_transfer.recipes import TransferabilityRanking
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import feature_extractor
from keras_transfer.recipes import rank_transferability
from tests.test_case import TestCase


def _dense_model(kernel, activation=None, name=None):
    """A flatten + Dense model on 8x8x1 digits with a fixed kernel (no training)."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Dense(kernel.shape[1], activation=activation, use_bias=False),
        ],
        name=name,
    )
    model.layers[-1].set_weights([kernel.astype("float32")])
    return model


class RankTransferabilityTest(TestCase):
    @classmethod
    def setUpClass(cls):
        (x, y), _ = load_digits(image_size=8, seed=0)
        cls.x, cls.y = x[:300], y[:300]
        flat = cls.x.reshape(300, -1).astype("float64") / 255
        # Informative: one template per class (the class-mean image, centred); uninformative: random directions.
        templates = np.stack([flat[cls.y == c].mean(axis=0) for c in range(10)], axis=1)
        cls.informative = templates - templates.mean(axis=1, keepdims=True)
        cls.random = np.random.default_rng(0).normal(size=(64, 10)) * 0.1

    def test_informative_features_rank_first_by_every_feature_metric(self):
        candidates = {"random": _dense_model(self.random), "templates": _dense_model(self.informative)}
        for metric in ("logme", "h_score"):
            with self.subTest(metric):
                ranking = rank_transferability(candidates, self.x, self.y, metric=metric)
                self.assertEqual(ranking.names, ["templates", "random"])
                self.assertEqual([row["rank"] for row in ranking], [1, 2])
                self.assertEqual(ranking["templates"]["feature_dim"], 10)
                self.assertGreater(ranking["templates"]["score"], ranking["random"]["score"])

    def test_informative_classifier_ranks_first_by_leep_and_nce(self):
        candidates = {
            "random": _dense_model(self.random * 10, activation="softmax"),
            "templates": _dense_model(self.informative * 10, activation="softmax"),
        }
        for metric in ("leep", "nce"):
            with self.subTest(metric):
                self.assertEqual(rank_transferability(candidates, self.x, self.y, metric=metric).best, "templates")

    def test_scores_are_the_ops_on_the_features_that_feed_the_head(self):
        keras.utils.set_random_seed(0)
        model = build_classifier("simple_cnn", 10, (8, 8, 1), widths=(4, 8))
        features = feature_extractor(model).predict(self.x, verbose=0)
        probabilities = model.predict(self.x, verbose=0)
        ranking = rank_transferability({"cnn": model}, self.x, self.y, batch_size=128)
        self.assertAllClose(ranking["cnn"]["score"], ops.log_me(features, self.y), atol=1e-5, rtol=1e-5)
        self.assertEqual(ranking["cnn"]["feature_dim"], 8)
        leep = rank_transferability({"cnn": model}, self.x, self.y, metric="leep")
        self.assertAllClose(leep["cnn"]["score"], ops.leep(probabilities, self.y), atol=1e-5, rtol=1e-5)

    def test_backbone_names_and_feature_cache(self):
        cache = self.get_temp_dir()
        ranking = rank_transferability(
            {"cnn": "simple_cnn", "template": _dense_model(self.informative)},
            self.x[:60],
            self.y[:60],
            weights=None,
            cache_dir=cache,
        )
        self.assertEqual(sorted(ranking.names), ["cnn", "template"])
        self.assertEqual(ranking["cnn"]["feature_dim"], 64)
        self.assertLen([name for name in os.listdir(cache) if name.endswith(".npy")], 2)
        self.assertTrue(np.isfinite(list(ranking.scores.values())).all())

    def test_table(self):
        rows = (
            {"rank": 1, "name": "b", "score": 0.5, "feature_dim": 3, "seconds": 1.25},
            {"rank": 2, "name": "a", "score": -1.0, "feature_dim": 12, "seconds": 0.5},
        )
        ranking = TransferabilityRanking("leep", rows)
        self.assertEqual(
            ranking.to_markdown(digits=2).splitlines(),
            [
                "| rank | name | leep  | feature_dim | seconds |",
                "|------|------|-------|-------------|---------|",
                "| 1    | b    | 0.50  | 3           | 1.25    |",
                "| 2    | a    | -1.00 | 12          | 0.50    |",
            ],
        )
        self.assertEqual(str(ranking), ranking.to_markdown())
        self.assertEqual((len(ranking), ranking[1]["name"], ranking.scores), (2, "a", {"b": 0.5, "a": -1.0}))
        with self.assertRaisesRegex(KeyError, "No candidate named 'c'"):
            ranking["c"]

    def test_errors(self):
        model = _dense_model(self.random)
        x, y = self.x[:20], self.y[:20] % 2
        self.assertRaisesValueError(
            ["`candidates` must be a non-empty dict", "candidates={}"], rank_transferability, {}, x, y
        )
        self.assertRaisesValueError(
            ["`candidates` must be a non-empty dict", "candidates of type list"], rank_transferability, [model], x, y
        )
        self.assertRaisesValueError(
            ["`candidates` must map names to keras.Model", "candidates['m'] of type int"],
            rank_transferability,
            {"m": 3},
            x,
            y,
        )
        self.assertRaisesValueError(
            ["`backbone` must be one of the registered backbones", "resnet50"],
            rank_transferability,
            {"m": "resnet5"},
            x,
            y,
        )
        self.assertRaisesValueError(
            ["`candidates` must map to models that output source-class probabilities", "metric='logme'"],
            rank_transferability,
            {"m": "simple_cnn"},
            x,
            y,
            metric="leep",
        )
        self.assertRaisesValueError(
            ["`metric` must be one of", "metric='LogME'"], rank_transferability, {"m": model}, x, y, metric="LogME"
        )
        self.assertRaisesValueError(
            ["`y` must have one entry per row of `x`", "length 19"], rank_transferability, {"m": model}, x, y[:19]
        )
        self.assertRaisesValueError(
            ["`y` must hold at least 2 classes"], rank_transferability, {"m": model}, x, np.zeros(20)
        )
        self.assertRaisesValueError(
            ["`x` must contain at least one example"], rank_transferability, {"m": model}, x[:0], y[:0]
        )
        bad = x.astype("float32")
        bad[0, 0, 0, 0] = np.nan
        self.assertRaisesValueError(["`x` must contain only finite values"], rank_transferability, {"m": model}, bad, y)
        # Models whose outputs are not probabilities: the error names the candidate and the fix.
        self.assertRaisesValueError(
            ["Candidate 'm' (leep)", "must hold probabilities in [0, 1]", "softmax"],
            rank_transferability,
            {"m": model},
            x,
            y,
            metric="leep",
        )
        self.assertRaisesValueError(
            ["Candidate 'sigmoid' (leep)", "must have rows that sum to 1", "softmax"],
            rank_transferability,
            {"sigmoid": _dense_model(self.random, activation="sigmoid")},
            x,
            y,
            metric="leep",
        )
        # NCE reads the argmax only: logits and probabilities give one score.
        logits, softmax = _dense_model(self.informative), _dense_model(self.informative, activation="softmax")
        scores = rank_transferability({"logits": logits, "softmax": softmax}, x, y, metric="nce").scores
        self.assertAllClose(scores["logits"], scores["softmax"], atol=0)
