import os

import keras
import numpy as np

from keras_transfer.recipes import adapter_kind
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import combine_lora
from keras_transfer.recipes import fold_adapters
from keras_transfer.recipes import get_lora_factors
from keras_transfer.recipes import merge_adapters
from keras_transfer.recipes import task_vector
from tests.ops.test_task_vectors import numpy_ties
from tests.recipes.adapter_models import tiny_cnn
from tests.test_case import TestCase


def mlp(classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name="body1")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="body2")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="head")(x))


def trained(model, seed, scale=0.3):
    """`model` with every trainable variable (LoRA / DoRA factors, adapters, head) moved off its init."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(size=variable.shape) * scale)
    return model


def numpy_lora_deltas(base, lora):
    """`{layer name: (alpha / r) A B}` from the factors, and the head's delta, in NumPy."""
    out = {f"{path}/kernel": f["alpha"] / f["rank"] * f["a"] @ f["b"] for path, f in get_lora_factors(lora).items()}
    for name in ("kernel", "bias"):
        out[f"head/{name}"] = (
            getattr(lora.get_layer("head"), name).numpy() - getattr(base.get_layer("head"), name).numpy()
        )
    return out


class MergeAdaptersTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = mlp()
        cls.tasks = [trained(add_adapters(cls.base, "body\\d", kind="lora", rank=2), seed) for seed in (1, 2, 3)]
        cls.x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")

    def merged_value(self, model, key):
        layer, name = key.split("/")
        return getattr(model.get_layer(layer), name).numpy().astype("float64")

    def test_lora_products_merged_as_numpy_references(self):
        deltas = [numpy_lora_deltas(self.base, task) for task in self.tasks]
        vector = task_vector(self.base, self.tasks[0])
        self.assertAllClose(vector["body1/kernel"], deltas[0]["body1/kernel"], atol=1e-6)
        self.assertAllClose(vector["body1/bias"], np.zeros(8), atol=0)
        references = {
            ("linear", None): lambda d: sum(d) / 3,
            ("linear", (0.2, 0.5, 0.3)): lambda d: 0.2 * d[0] + 0.5 * d[1] + 0.3 * d[2],
            ("task_arithmetic", None): lambda d: 0.4 * sum(d),
            ("ties", None): lambda d: numpy_ties(d, 0.3, 0.4),
            ("ties", (1.0, 2.0, 0.5)): lambda d: numpy_ties(d, 0.3, 0.4, (1.0, 2.0, 0.5)),
        }
        for (method, weights), reference in references.items():
            with self.subTest(method=method, weights=weights):
                merged = merge_adapters(self.base, self.tasks, method, weights=weights, density=0.3, scale=0.4)
                for key in deltas[0]:
                    expected = self.merged_value(self.base, key) + reference([d[key] for d in deltas])
                    self.assertAllClose(self.merged_value(merged, key), expected, atol=1e-5)
        # A factor-wise average of A and B (what must NOT happen) differs from the product average.
        factors = [get_lora_factors(task)["body1"] for task in self.tasks]
        wrong = np.mean([f["a"] for f in factors], 0) @ np.mean([f["b"] for f in factors], 0)
        self.assertNotAllClose(wrong, sum(d["body1/kernel"] for d in deltas) / 3, atol=1e-3)

    def test_merged_model_is_plain_saves_and_serves(self):
        merged = merge_adapters(self.base, self.tasks, "ties", density=0.5)
        self.assertEqual([type(layer).__name__ for layer in merged.layers], ["InputLayer", "Dense", "Dense", "Dense"])
        self.assertFalse(any(getattr(layer, "lora_enabled", False) for layer in merged.layers))
        self.run_serialization_test(merged, self.x)
        self.run_export_test(merged, self.x)
        # One adapter at weight 1 gives back the adapted model's function exactly (no loss in the merge).
        single = merge_adapters(self.base, self.tasks[:1], "linear")
        self.assertAllClose(single(self.x), self.tasks[0](self.x), atol=1e-5)
        # The task vectors saved to .npz merge as the models do.
        path = os.path.join(self.get_temp_dir(), "task.npz")
        np.savez(path, **task_vector(self.base, self.tasks[1]))
        with np.load(path) as loaded:
            from_file = merge_adapters(self.base, [self.tasks[0], dict(loaded)], "linear")
        from_models = merge_adapters(self.base, self.tasks[:2], "linear")
        self.assertAllClose(from_file(self.x), from_models(self.x), atol=1e-6)

    def test_conv_and_dora_adapters_merge_their_folded_kernels(self):
        base = tiny_cnn()
        x = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype("float32")
        for kind in ("conv_series", "dora"):
            with self.subTest(kind=kind):
                targets = "conv2" if kind == "conv_series" else "conv\\d"
                tasks = [trained(add_adapters(base, targets, kind=kind, rank=2), seed, 0.1) for seed in (4, 5)]
                self.assertEqual(adapter_kind(tasks[0]), kind)
                folded = [fold_adapters(task).get_layer("backbone").get_layer("conv2").kernel.numpy() for task in tasks]
                original = base.get_layer("backbone").get_layer("conv2").kernel.numpy()
                merged = merge_adapters(base, tasks, "task_arithmetic", scale=0.5)
                expected = original + 0.5 * ((folded[0] - original) + (folded[1] - original))
                self.assertAllClose(merged.get_layer("backbone").get_layer("conv2").kernel, expected, atol=1e-5)
                single = merge_adapters(base, tasks[1:], "linear")
                self.assertAllClose(single(x), tasks[1](x), atol=1e-5)

    def test_combine_lora_is_the_weighted_delta_sum_unfolded(self):
        weights = [0.6, 0.9, -0.3]
        combined = combine_lora(self.base, self.tasks, weights=weights)
        layer = combined.get_layer("body2")
        self.assertTrue(layer.lora_enabled)
        self.assertEqual(layer.lora_rank, 6)
        deltas = [numpy_lora_deltas(self.base, task)["body2/kernel"] for task in self.tasks]
        expected = self.base.get_layer("body2").kernel.numpy() + sum(w * d for w, d in zip(weights, deltas))
        self.assertAllClose(layer.kernel, expected, atol=1e-5)  # W + A B, computed at every call
        linear = merge_adapters(self.base, self.tasks, "linear", weights=weights)
        self.assertAllClose(combined(self.x), linear(self.x), atol=1e-5)
        self.assertEqual(
            sorted(v.path for v in combined.trainable_weights),
            sorted(f"body{i}/lora_kernel_{ab}" for i in (1, 2) for ab in "ab"),
        )
        self.run_export_test(combined, self.x)
        # The mixture fine-tunes further: only the concatenated factors move.
        combined.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        frozen = [combined.get_layer("head"), combined.get_layer("body1").bias]
        self.run_fit_test(combined, self.x, np.arange(5) % 3, frozen=frozen)

    def test_bad_arguments(self):
        base, tasks = self.base, self.tasks
        self.assertRaisesValueError(["`adapters` must be a non-empty list", "adapters=[]"], merge_adapters, base, [])
        dora = add_adapters(base, "body1", kind="dora", rank=2)
        self.assertRaisesValueError(["one kind", "['lora', 'dora']"], merge_adapters, base, [tasks[0], dora])
        other = add_adapters(mlp(classes=4), "body1", kind="lora", rank=2)
        self.assertRaisesValueError(
            ["`adapters[1]` must have the weight shapes", "'head/kernel' of shape (8, 4)", "one base model"],
            merge_adapters,
            base,
            [tasks[0], other],
        )
        self.assertRaisesValueError(
            ["`weights` must hold one number per adapter (3)", "weights=[1.0, 2.0]"],
            merge_adapters,
            base,
            tasks,
            weights=[1.0, 2.0],
        )
        for density in (0, 1.5):
            self.assertRaisesValueError(
                ["`density` must be a number in (0, 1]", f"density={density}", "fraction of entries kept"],
                merge_adapters,
                base,
                tasks,
                "ties",
                density=density,
            )
        self.assertRaisesValueError(["`method` must be one of", "method='mean'"], merge_adapters, base, tasks, "mean")
        bottleneck = add_adapters(base, "body1", bottleneck_dim=2)
        self.assertRaisesValueError(["BottleneckAdapter", "no weight delta"], merge_adapters, base, [bottleneck])
        self.assertRaisesValueError(
            ["`lora_models[0]` must be LoRA-adapted", "'dora'"], combine_lora, base, [dora, dora]
        )
        self.assertRaisesValueError(["`weights` must hold one number per model (3)"], combine_lora, base, tasks, [1.0])
        broken = task_vector(base, tasks[0])
        broken["head/bias"][1] = np.nan
        self.assertRaisesValueError(
            ["`adapters[1]` must hold finite weights", "'head/bias'"], merge_adapters, base, [tasks[1], broken]
        )
        one_layer = add_adapters(base, "body1", kind="lora", rank=2)
        self.assertRaisesValueError(["LoRA on the same layers"], combine_lora, base, [tasks[0], one_layer])
