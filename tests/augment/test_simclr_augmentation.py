import keras
import numpy as np
import scipy.ndimage
import scipy.stats
import tensorflow as tf

from keras_transfer.augment import SimCLRAugmentation
from keras_transfer.augment import image_ops
from keras_transfer.augment import simclr_dataset
from tests.test_case import TestCase


class ImageOpsTest(TestCase):
    def setUp(self):
        super().setUp()
        self.images = np.random.default_rng(0).uniform(size=(6, 20, 20, 3)).astype("float32")

    def test_full_crop_is_identity(self):
        out = image_ops.random_resized_crop(self.images, (20, 20), scale=(1.0, 1.0), ratio=(1.0, 1.0))
        self.assertAllClose(out, self.images, atol=1e-5)

    def test_crop_boxes_respect_scale_and_ratio(self):
        boxes = image_ops.random_crop_boxes(4000, 30, 40, scale=(0.2, 0.6), ratio=(0.5, 2.0)).numpy()
        h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        self.assertTrue(np.all(boxes >= -1e-6) and np.all(boxes <= 1 + 1e-6))
        area = h * w
        aspect = (w * 40) / (h * 30)  # in pixels
        unclipped = (h < 1 - 1e-6) & (w < 1 - 1e-6)
        self.assertTrue(np.all(area[unclipped] >= 0.2 - 1e-5) and np.all(area[unclipped] <= 0.6 + 1e-5))
        self.assertTrue(np.all(aspect[unclipped] >= 0.5 - 1e-4) and np.all(aspect[unclipped] <= 2.0 + 1e-4))
        # log-uniform aspect ratio: median near 1.
        self.assertLess(abs(np.median(np.log(aspect))), 0.1)

    def test_bounding_box_crop(self):
        out = image_ops.random_resized_crop_bounding_box(self.images[0], (12, 12), scale=(1.0, 1.0), ratio=(1.0, 1.0))
        self.assertAllClose(out, tf.image.resize(self.images[0], (12, 12)), atol=1e-5)

    def test_flip_is_original_or_mirror(self):
        out = image_ops.random_flip_left_right(np.concatenate([self.images] * 10)).numpy()
        flipped = 0
        for o, x in zip(out, np.concatenate([self.images] * 10)):
            same, mirrored = np.allclose(o, x), np.allclose(o, x[:, ::-1])
            self.assertTrue(same or mirrored)
            flipped += mirrored
        self.assertTrue(10 < flipped < 50)

    def test_grayscale_matches_luma(self):
        out = image_ops.random_grayscale(self.images, probability=1.0).numpy()
        luma = self.images @ np.array([0.2989, 0.587, 0.114], dtype="float32")
        for c in range(3):
            self.assertAllClose(out[..., c], luma, atol=1e-3)
        self.assertAllClose(image_ops.random_grayscale(self.images, probability=0.0), self.images)

    def test_color_jitter_on_gray_is_brightness(self):
        # Constant gray images: contrast, saturation and hue leave them unchanged,
        # so every output is the input times a brightness factor in [1 - 0.8 s, 1 + 0.8 s].
        gray = np.full((200, 4, 4, 3), 0.5, dtype="float32")
        out = image_ops.color_jitter(gray, strength=0.5, probability=1.0).numpy()
        factors = out[:, 0, 0, 0] / 0.5
        self.assertAllClose(out, factors[:, None, None, None] * gray, atol=1e-5)
        self.assertTrue(np.all(factors >= 0.6 - 1e-5) and np.all(factors <= 1.4 + 1e-5))
        self.assertGreater(np.std(factors), 0.1)  # drawn per image
        self.assertAllClose(image_ops.color_jitter(self.images, 0.5, 0.0), self.images)
        jittered = image_ops.color_jitter(self.images, 1.0, 1.0).numpy()
        self.assertTrue(np.all(jittered >= 0) and np.all(jittered <= 1))

    def test_seeded_draws_are_stateless_and_keep_their_distributions(self):
        gray = np.full((4000, 2, 2, 3), 0.5, dtype="float32")
        seed = tf.constant([11, 3])
        once = image_ops.color_jitter(gray, strength=0.5, probability=1.0, seed=seed).numpy()
        self.assertAllClose(image_ops.color_jitter(gray, 0.5, 1.0, seed=seed), once, atol=0)
        other = image_ops.color_jitter(gray, 0.5, 1.0, seed=tf.constant([11, 4])).numpy()
        self.assertGreater(np.abs(other - once).max(), 0.1)
        # Brightness factor ~ U(1 - 0.8 s, 1 + 0.8 s) per image (contrast etc. leave gray alone).
        factors = once[:, 0, 0, 0] / 0.5
        self.assertGreater(scipy.stats.kstest(factors, "uniform", args=(0.6, 0.8)).pvalue, 1e-3)
        # Crop boxes: log aspect ratio ~ U(log 3/4, log 4/3) and area ~ U(scale) where unclipped.
        boxes = image_ops.random_crop_boxes(4000, 20, 20, (0.1, 0.5), (3 / 4, 4 / 3), seed=seed).numpy()
        self.assertAllClose(
            boxes, image_ops.random_crop_boxes(4000, 20, 20, (0.1, 0.5), (3 / 4, 4 / 3), seed=seed), atol=0
        )
        h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        low, high = np.log(3 / 4), np.log(4 / 3)
        self.assertGreater(scipy.stats.kstest(np.log(w / h), "uniform", args=(low, high - low)).pvalue, 1e-3)
        self.assertGreater(scipy.stats.kstest(h * w, "uniform", args=(0.1, 0.4)).pvalue, 1e-3)
        # The corner is uniform over the room left: y1 / (1 - h) ~ U(0, 1).
        self.assertGreater(scipy.stats.kstest(boxes[:, 0] / (1 - h), "uniform").pvalue, 1e-3)
        # Apply-probabilities: 20 % grayscale, 50 % flips (binomial, 4000 images).
        colour = np.random.default_rng(1).uniform(size=(4000, 2, 2, 3)).astype("float32")
        grayed = image_ops.random_grayscale(colour, 0.2, seed=seed).numpy()
        share = np.mean(np.all(np.isclose(grayed[..., 0], grayed[..., 1]), axis=(1, 2)))
        self.assertLess(abs(share - 0.2), 4 * np.sqrt(0.2 * 0.8 / 4000))
        flipped = image_ops.random_flip_left_right(colour, seed=seed).numpy()
        share = np.mean(np.any(flipped != colour, axis=(1, 2, 3)))
        self.assertLess(abs(share - 0.5), 4 * np.sqrt(0.25 / 4000))

    def test_blur_matches_scipy(self):
        sigma = 1.3
        out = image_ops.random_gaussian_blur(self.images, 5, sigma=(sigma, sigma), probability=1.0)
        for image, blurred in zip(self.images, out.numpy()):
            expected = np.stack(
                [
                    scipy.ndimage.gaussian_filter(image[..., c], sigma, mode="mirror", truncate=2 / sigma)
                    for c in range(3)
                ],
                axis=-1,
            )
            self.assertAllClose(blurred, expected, atol=1e-5)
        self.assertEqual(image_ops.blur_kernel_size(224), 23)
        self.assertEqual(image_ops.blur_kernel_size(8), 0)


class SimCLRAugmentationTest(TestCase):
    def setUp(self):
        super().setUp()
        self.images = np.random.default_rng(0).integers(0, 256, size=(8, 24, 24, 3)).astype("uint8")

    def test_shapes_range_and_independence(self):
        for method in ("crop_and_resize", "bounding_box"):
            layer = SimCLRAugmentation(16, crop_method=method)
            twins = np.repeat(self.images[:1], 4, axis=0)
            out = layer(twins).numpy()
            self.assertEqual(out.shape, (4, 16, 16, 3))
            self.assertTrue(out.min() >= 0 and out.max() <= 255)
            self.assertNotAllClose(out[0], out[1], atol=1e-3)  # per-image randomness
            self.assertEqual(layer.compute_output_shape((4, 24, 24, 3)), (4, 16, 16, 3))
        gray = SimCLRAugmentation((10, 12), value_range=(0, 1))(self.images[..., :1] / 255.0)
        self.assertEqual(tuple(gray.shape), (8, 10, 12, 1))

    def test_seed_gives_the_same_views(self):
        for method in ("crop_and_resize", "bounding_box"):
            layer = SimCLRAugmentation(16, crop_method=method)
            a = layer(self.images, seed=tf.constant([5, 1])).numpy()
            self.assertAllClose(layer(self.images, seed=tf.constant([5, 1])), a, atol=0)
            self.assertGreater(np.abs(layer(self.images, seed=tf.constant([5, 2])).numpy() - a).max(), 10)
            # Inside a parallel map the views depend on the seed only, not on the schedule.
            ds = tf.data.Dataset.from_tensors(self.images).repeat(16).enumerate()
            ds = ds.map(lambda i, x: layer(x, seed=tf.stack([i, i])), num_parallel_calls=8, deterministic=True)
            for i, view in enumerate(ds):
                self.assertAllClose(view, layer(self.images, seed=tf.constant([i, i])), atol=0)
        self.assertRaisesValueError(
            ["`seed` must be a shape-(2,) int32 or int64", "float32"],
            SimCLRAugmentation(8),
            self.images,
            seed=tf.constant([1.0, 2.0]),
        )
        self.assertRaisesValueError("shape (3,)", SimCLRAugmentation(8), self.images, seed=tf.constant([1, 2, 3]))

    def test_dataset_is_reproducible_under_set_random_seed(self):
        # Stateful ops in the parallel map made two seeded pipelines differ; now batches are
        # stateless functions of the seed, identical in every run, different each epoch.
        x = np.random.default_rng(0).integers(0, 256, size=(64, 12, 12, 1)).astype("uint8")
        views = SimCLRAugmentation(12, crop_scale=(0.3, 1.0), flip=False, blur_probability=0.0)

        def two_epochs(seed=None):
            ds = simclr_dataset(x, batch_size=8, augmentation=views, seed=seed)
            return [[np.concatenate([v1, v2]) for ((v1, v2),) in ds] for _ in range(2)]

        keras.utils.set_random_seed(3)
        first = two_epochs()
        tf.random.uniform(())  # whatever ran in between
        keras.utils.set_random_seed(3)
        second = two_epochs()
        keras.utils.set_random_seed(4)
        other = two_epochs()
        for epoch in range(2):
            for a, b in zip(first[epoch], second[epoch]):
                self.assertAllClose(a, b, atol=0)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(first[0], first[1])), 100)  # new epoch
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(first[0], other[0])), 100)  # new seed
        # An explicit seed picks the stream (under a given global seed, as tf.data's shuffle).
        keras.utils.set_random_seed(5)
        fixed = two_epochs(seed=7)
        moved = two_epochs(seed=8)
        keras.utils.set_random_seed(5)
        for a, b in zip(fixed[0], two_epochs(seed=7)[0]):
            self.assertAllClose(a, b, atol=0)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(fixed[0], moved[0])), 100)
        self.assertRaisesValueError(["`seed` must be a non-negative integer", "seed=-1"], simclr_dataset, x, 8, seed=-1)

    def test_inference_only_resizes(self):
        out = SimCLRAugmentation(12)(self.images, training=False)
        self.assertAllClose(out, tf.image.resize(self.images.astype("float32"), (12, 12)), atol=1e-3)

    def test_config_round_trip(self):
        layer = SimCLRAugmentation(16, jitter_strength=1.0, blur_probability=0.0, crop_method="bounding_box")
        config = layer.get_config()
        self.assertEqual(SimCLRAugmentation.from_config(config).get_config(), config)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        self.assertEqual(restored.crop_method, "bounding_box")

    def test_dataset(self):
        x = self.images[..., :1]
        ds = simclr_dataset(x, batch_size=3, drop_remainder=False, shuffle=False)
        sizes = []
        for ((v1, v2),) in ds:
            self.assertEqual(v1.shape[1:], (24, 24, 1))
            self.assertEqual(v1.shape, v2.shape)
            sizes.append(v1.shape[0])
        self.assertEqual(sizes, [3, 3, 2])
        self.assertEqual([b[0][0].shape[0] for b in simclr_dataset(x, batch_size=3)], [3, 3])
        ds = simclr_dataset(x, batch_size=4, image_size=8)
        self.assertEqual(next(iter(ds))[0][0].shape, (4, 8, 8, 1))

    def test_errors(self):
        layer = SimCLRAugmentation(8)
        self.assertRaisesValueError(["(batch, height, width, channels)", "(24, 24, 3)"], layer, self.images[0])
        self.assertRaisesValueError(["1 or 3 channels", "(8, 24, 24, 2)"], layer, self.images[..., :2])
        self.assertRaisesValueError("`image_size` must be a positive integer", SimCLRAugmentation, 0)
        self.assertRaisesValueError("`image_size` must be an int or a (height, width)", SimCLRAugmentation, (1, 2, 3))
        self.assertRaisesValueError(
            ["`crop_scale`", "crop_scale=(0.5, 1.5)"], SimCLRAugmentation, 8, crop_scale=(0.5, 1.5)
        )
        self.assertRaisesValueError("`crop_ratio`", SimCLRAugmentation, 8, crop_ratio=(2.0, 1.0))
        self.assertRaisesValueError("`jitter_strength`", SimCLRAugmentation, 8, jitter_strength=-1)
        self.assertRaisesValueError("`blur_probability`", SimCLRAugmentation, 8, blur_probability=1.5)
        self.assertRaisesValueError("`value_range`", SimCLRAugmentation, 8, value_range=(1, 0))
        self.assertRaisesValueError("`crop_method`", SimCLRAugmentation, 8, crop_method="keras_cv")
        self.assertRaisesValueError(["ONE image", "batch_size=7"], simclr_dataset, self.images, 7, drop_remainder=False)
        self.assertRaisesValueError(
            ["(num_images, height, width, channels)", "x[..., None]"], simclr_dataset, self.images[..., 0], 4
        )
        self.assertRaisesValueError("at least one example", simclr_dataset, self.images[:0], 4)
        self.assertRaisesValueError("NumPy array or tensor", simclr_dataset, [1, 2], 4)
        bad = self.images.astype("float32")
        bad[2, 5, 5, 0] = np.nan
        bad[3, 1, 1, 1] = np.inf
        self.assertRaisesValueError(
            ["`x` must contain only finite values", "x with 2 NaN or infinite", "Clean or impute"],
            simclr_dataset,
            bad,
            4,
        )
        self.assertRaisesValueError("x with 2 NaN", simclr_dataset, tf.constant(bad), 4)
        self.assertRaisesValueError("`batch_size` must be a positive", simclr_dataset, self.images, 0)
