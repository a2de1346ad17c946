import keras
import numpy as np

from keras_transfer.datasets import load_digits
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import evaluate_accuracy
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import get_head
from keras_transfer.recipes import sequential_transfer
from tests.test_case import TestCase


class BackboneLog(keras.callbacks.Callback):
    """The backbone's weights when each stage's fine-tuning `fit` starts and ends."""

    def __init__(self):
        super().__init__()
        self.begin, self.end = [], []

    def on_train_begin(self, logs=None):
        self.begin.append([w.copy() for w in get_backbone(self.model).get_weights()])

    def on_train_end(self, logs=None):
        self.end.append([w.copy() for w in get_backbone(self.model).get_weights()])


def digits_tasks():
    (x, y), (x_test, y_test) = load_digits(image_size=8)
    low, high = y < 5, y >= 5
    x, x_test = x.astype("float32"), x_test.astype("float32")
    source = (x[low][:120], y[low][:120], [str(d) for d in range(5)])
    # Digits 5-9 reuse the ids 0-4: only their class names tell that the classes changed.
    target_names = [str(d) for d in range(5, 10)]
    middle = (x[high][:80], y[high][:80] - 5, target_names)
    target = (x[high][80:160], y[high][80:160] - 5, target_names)
    test_high = y_test >= 5
    return [source, middle, target], (x_test[test_high], y_test[test_high] - 5)


class SequentialTransferTest(TestCase):
    def test_each_stage_starts_from_the_last(self):
        tasks, (x_test, y_test) = digits_tasks()
        log = BackboneLog()
        model = build_classifier("simple_cnn", 5, (8, 8, 1), widths=(4, 8, 8))
        backbone = get_backbone(model)
        final, stages = sequential_transfer(
            model,
            tasks,
            epochs=[1, 1, 2],
            learning_rate=3e-3,
            batch_size=20,
            validation_data=[None, None, (x_test, y_test)],
            callbacks=[log],
        )
        self.assertEqual([s["new_head"] for s in stages], [False, True, False])
        self.assertEqual([s["num_classes"] for s in stages], [5, 5, 5])
        self.assertIs(get_backbone(final), backbone)  # trained in place, shared through the new head
        self.assertEqual(len(log.begin), 3)
        for k in range(3):
            # Each stage trains the backbone (its first conv changes) ...
            self.assertNotAllClose(log.end[k][0], log.begin[k][0])
            if k:  # ... starting from exactly where the previous stage left it.
                for a, b in zip(log.begin[k], log.end[k - 1]):
                    self.assertAllClose(a, b, atol=0, rtol=0)
        self.assertEqual([s["histories"]["fine_tune"].params["epochs"] for s in stages], [1, 1, 2])
        # The new head was fitted by the convex probe; the kept head was not re-probed.
        self.assertIsNone(stages[0]["histories"]["probe"])
        self.assertIn("train_accuracy", stages[1]["histories"]["probe"])
        self.assertIsNone(stages[2]["histories"]["probe"])
        self.assertIsNone(stages[0]["val_accuracy"])
        self.assertAllClose(stages[2]["val_accuracy"], evaluate_accuracy(final, x_test, y_test))
        self.assertAllClose(stages[2]["train_accuracy"], evaluate_accuracy(final, *tasks[2][:2]))

    def test_model_fn_and_head_choices(self):
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (12, 8, 8, 1)).astype("float32")
        built = []

        def model_fn(num_classes):
            built.append(num_classes)
            return build_classifier("simple_cnn", num_classes, (8, 8, 1), widths=(4, 4, 4), activation=None)

        tasks = [(x, np.arange(12) % 3), (x, np.arange(12) % 3), (x, np.arange(12) % 2)]
        final, stages = sequential_transfer(model_fn, tasks, epochs=0, probe=None, batch_size=6)
        self.assertEqual(built, [3])
        self.assertEqual([s["new_head"] for s in stages], [False, False, True])
        self.assertEqual(final.output_shape, (None, 2))
        self.assertEqual(get_head(final).activation.__name__, "linear")  # the new head keeps logits
        _, always = sequential_transfer(model_fn, tasks[:2], epochs=0, probe=None, new_head="always")
        self.assertEqual([s["new_head"] for s in always], [True, True])
        # A given model whose head does not fit the first task gets a new one.
        given = build_classifier("simple_cnn", 4, (8, 8, 1), widths=(4, 4, 4))
        first, stages = sequential_transfer(given, tasks[:1], epochs=0, probe=None)
        self.assertEqual((stages[0]["new_head"], first.output_shape), (True, (None, 3)))
        self.assertIs(get_backbone(first), get_backbone(given))

    def test_errors(self):
        x = np.zeros((6, 8, 8, 1), "float32")
        task = (x, np.arange(6) % 2)
        model = build_classifier("simple_cnn", 2, (8, 8, 1), widths=(4, 4, 4))
        self.assertRaisesValueError("`tasks` must be a non-empty list", sequential_transfer, model, [])
        self.assertRaisesValueError(
            ["`new_head` must allow a new head", "3 classes", "new_head='never'"],
            sequential_transfer,
            model,
            [task, (x, np.arange(6) % 3)],
            epochs=0,
            probe=None,
            new_head="never",
        )
        self.assertRaisesValueError(
            ["`epochs` must be one value or one per task (2)", "3 values"],
            sequential_transfer,
            model,
            [task, task],
            epochs=[1, 1, 1],
        )
        self.assertRaisesValueError("`tasks[1]` must be an (x, y)", sequential_transfer, model, [task, (x,)])
        self.assertRaisesValueError(
            ["`tasks[0]` must name every class", "2 class names for labels up to 2"],
            sequential_transfer,
            model,
            [(x, np.arange(6) % 3, ["a", "b"])],
        )
        self.assertRaisesValueError("`new_head` must be one of", sequential_transfer, model, [task], new_head="new")
        self.assertRaisesValueError("`model` must be a Keras model", sequential_transfer, 3, [task])
