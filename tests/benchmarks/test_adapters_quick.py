import numpy as np

from benchmarks import adapters_latency
from benchmarks import adapters_transfer
from tests.test_case import TestCase


class AdaptersBenchmarksQuickTest(TestCase):
    def test_transfer_quick(self):
        results = adapters_transfer.main(["--quick", "--protocol", "scratch"])
        self.assertGreater(results["source_accuracy"], 0.3)
        for method in ("linear probe", "full fine-tune", "LoRA r=2 (1x1 convs)", "DoRA r=2 (1x1 convs)"):
            self.assertGreaterEqual(results[method]["accuracy"], 0.0)
            self.assertLessEqual(results[method]["accuracy"], 100.0)
            self.assertGreater(results[method]["trainable_percent"], 0.0)
        # DoRA trains LoRA's factors plus one magnitude per output filter.
        self.assertGreater(
            results["DoRA r=2 (1x1 convs)"]["trainable_percent"], results["LoRA r=2 (1x1 convs)"]["trainable_percent"]
        )
        # Adapters train far fewer parameters than full fine-tuning.
        self.assertLess(
            results["conv series, full (project convs)"]["trainable_percent"],
            results["full fine-tune"]["trainable_percent"] / 2,
        )
        # BatchNorm affine training adds gamma/beta to the trainable set (statistics stay frozen).
        self.assertGreater(
            results["full fine-tune (BN affine, statistics frozen)"]["trainable_percent"],
            results["full fine-tune"]["trainable_percent"],
        )
        self.assertGreater(
            results["conv series, full (project convs) + BN affine"]["trainable_percent"],
            results["conv series, full (project convs)"]["trainable_percent"],
        )
        self.assertLess(
            results["BN affine only"]["trainable_percent"], results["full fine-tune"]["trainable_percent"] / 2
        )

    def test_transfer_quick_strong(self):
        # The default protocol: augmented digits + grey digits-M pretraining, checkpoint and
        # learning rate chosen on a target validation split.
        results = adapters_transfer.main(["--quick"])
        self.assertEqual([epoch for epoch, _ in results["source_checkpoints"]], [1, 2])
        self.assertIn(results["source_epoch"], (1, 2))
        self.assertEqual(set(results["source_accuracy_by_set"]), {"digits", "digits-M (grey)"})
        # One method of each kind (LoRA, DoRA and bottleneck adapters: the scratch protocol's --quick above).
        methods = ["linear probe", "full fine-tune", "BN affine only", "conv series, full (project convs <= 48 ch)"]
        self.assertEqual([m for m in results if m in adapters_transfer.STRONG_METHODS], methods)
        for method in methods:
            for key in ("accuracy", "validation_accuracy"):
                self.assertGreaterEqual(results[method][key], 0.0)
                self.assertLessEqual(results[method][key], 100.0)
            self.assertGreater(results[method]["trainable_percent"], 0.0)
        self.assertEqual(results["full fine-tune"]["paired_gap"], 0.0)

    def test_target_validation_split(self):
        split, (x_val, y_val) = adapters_transfer.target_split_with_validation(8, 10, seed=1)
        x_train, y_train = split.target_train
        self.assertEqual(len(x_val), 50)
        self.assertEqual(sorted(np.bincount(y_val).tolist()), [10] * 5)
        flat = lambda x: {row.tobytes() for row in x.reshape(len(x), -1)}  # noqa: E731
        # Disjoint from the training labels; drawn from the training pool, so not from the test set
        # (up to identical-looking images, which an 8 px digit set could hold; none here).
        self.assertFalse(flat(x_val) & flat(x_train))
        self.assertFalse(flat(x_val) & flat(split.target_test[0]))
        # Seeds redraw labels on one train/test split: the test set is the same for every seed,
        # so no seed's validation image is another seed's test image.
        other, (x_val_0, _) = adapters_transfer.target_split_with_validation(8, 10, seed=0)
        self.assertAllClose(other.target_test[0], split.target_test[0])
        self.assertFalse(flat(x_val_0) & flat(split.target_test[0]))
        self.assertTrue(flat(x_val_0) ^ flat(x_val))  # the labelled draw does change with the seed

    def test_target_validation_split_too_many_labels(self):
        # 40 + 40 per class fit in the ~135 training images of each target class; 70 + 70 do not.
        split, (x_val, _) = adapters_transfer.target_split_with_validation(8, 40, seed=0)
        self.assertEqual((len(split.target_train[0]), len(x_val)), (200, 200))
        with self.assertRaisesRegex(ValueError, "`labels` must be at most .*Received: labels=70"):
            adapters_transfer.target_split_with_validation(8, 70, seed=0)

    def test_strong_pretraining_reproduces(self):
        # Two pretrainings with one seed give the same source model (the augmentation draws in a
        # fixed order), so a rerun of the benchmark keeps the same checkpoint.
        (x, y), _ = adapters_transfer.strong_source_data(16)
        x, y = x[::4], y[::4]
        splits = [adapters_transfer.target_split_with_validation(16, 10, seed=0)]
        models = [
            adapters_transfer.pretrain_strong(x, y, splits, quick=True, epochs=2, every=1, seed=3) for _ in range(2)
        ]
        self.assertEqual(models[0][1], models[1][1])
        for a, b in zip(models[0][0].get_weights(), models[1][0].get_weights()):
            self.assertAllClose(a, b, atol=0, rtol=0)

    def test_to_grey(self):
        x = np.array([[[[30, 60, 90]]]], dtype="uint8")
        grey = adapters_transfer.to_grey(x)
        self.assertEqual(grey.shape, (1, 1, 1, 1))
        self.assertEqual(grey.dtype, np.uint8)
        self.assertEqual(int(grey[0, 0, 0, 0]), 60)

    def test_latency_quick(self):
        results = adapters_latency.main(["--quick"])
        self.assertLess(results["max_abs_error"]["conv adapters, folded"], 1e-3)
        self.assertLess(results["max_abs_error"]["LoRA, merged"], 1e-3)
        self.assertLess(results["max_abs_error"]["DoRA, merged"], 1e-3)
        self.assertEqual(results["DoRA, merged"]["params"], results["base"]["params"])
        self.assertEqual(results["conv adapters, folded"]["params"], results["base"]["params"])
        self.assertGreater(results["conv adapters, unfolded"]["params"], results["base"]["params"])
        for name in ("conv adapters, folded", "conv adapters, unfolded"):
            self.assertGreater(results[name]["ratio_to_base"], 0.0)
