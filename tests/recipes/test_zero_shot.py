import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.models import CLIP
from keras_transfer.recipes import build_zero_shot_classifier
from keras_transfer.recipes import class_text_embeddings
from keras_transfer.recipes import export_zero_shot_classifier
from keras_transfer.recipes import wise_ft
from tests.test_case import TestCase

NAMES = ["cat", "dog", "bird"]
TEMPLATES = ["a photo of a {}", "a {} drawing", "{}"]


def build(seed=0, **clip_kwargs):
    keras.utils.set_random_seed(seed)
    tokenizer = word_tokenizer(vocabulary=["a", "photo", "of", "drawing"] + NAMES, sequence_length=5)
    image_encoder = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()],
        name="image_encoder",
    )
    text_encoder = TextTransformerEncoder(tokenizer.vocabulary_size(), 5, embedding_dim=8, num_layers=1, num_heads=2)
    clip = CLIP(image_encoder, text_encoder, projection_dim=6, **clip_kwargs)
    return clip, tokenizer


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class ZeroShotTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.clip, cls.tokenizer = build()
        rng = np.random.default_rng(0)
        cls.images = rng.uniform(0, 255, size=(5, 6, 6, 1)).astype("float32")
        cls.labels = np.array([0, 1, 2, 0, 1])
        cls.model = build_zero_shot_classifier(cls.clip, NAMES, TEMPLATES, cls.tokenizer)

    def test_class_embeddings_are_normalised_means_of_prompt_embeddings(self):
        got = class_text_embeddings(self.clip, NAMES, TEMPLATES, self.tokenizer)
        for k, name in enumerate(NAMES):
            prompts = [t.format(name) for t in TEMPLATES]
            emb = self.clip.encode_text(self.tokenizer(prompts).numpy())
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
            mean = emb.mean(0)
            self.assertAllClose(got[k], mean / np.linalg.norm(mean), atol=1e-5)
        single = class_text_embeddings(self.clip, NAMES, "a photo of a {}", self.tokenizer)
        first = self.clip.encode_text(self.tokenizer(["a photo of a cat"]).numpy())[0]
        self.assertAllClose(single[0], first, atol=1e-5)

    def test_predictions_match_numpy(self):
        classes = class_text_embeddings(self.clip, NAMES, TEMPLATES, self.tokenizer)
        image = self.clip.encode_images(self.images)
        expected = softmax(self.clip.get_logit_scale() * image @ classes.T)
        self.assertAllClose(self.model.predict(self.images, verbose=0), expected, atol=1e-5)
        self.assertEqual(self.model.get_layer("zero_shot_head").class_names, NAMES)

    def test_siglip_model_gives_per_class_sigmoid_probabilities(self):
        clip, tokenizer = build(seed=1, loss_type="siglip", logit_scale_init=7.0, logit_bias_init=-2.5)
        clip.logit_bias.assign(-1.75)  # as if trained: the head reads the current value
        model = build_zero_shot_classifier(clip, NAMES, TEMPLATES, tokenizer)
        head = model.get_layer("zero_shot_head")
        self.assertEqual((head.activation, head.logit_bias), ("sigmoid", -1.75))
        classes = np.float64(class_text_embeddings(clip, NAMES, TEMPLATES, tokenizer))
        cosine = np.float64(clip.encode_images(self.images)) @ classes.T
        expected = 1.0 / (1.0 + np.exp(-(clip.get_logit_scale() * cosine - 1.75)))
        got = model.predict(self.images, verbose=0)
        self.assertAllClose(got, expected, atol=1e-5)
        self.assertNotAllClose(got.sum(1), np.ones(len(got)), atol=1e-2)
        self.run_serialization_test(model, self.images)
        self.run_export_test(model, self.images)
        # Asked for explicitly: softmax over the classes, and another bias (logits t cos + b).
        logits = build_zero_shot_classifier(
            clip, NAMES, TEMPLATES, tokenizer, activation="softmax", logit_bias=0.5, output="logits"
        )
        self.assertEqual(logits.get_layer("zero_shot_head").activation, "softmax")
        self.assertAllClose(logits.predict(self.images, verbose=0), clip.get_logit_scale() * cosine + 0.5, atol=1e-4)
        # A CLIP-loss model keeps the softmax head, with no bias.
        self.assertEqual(self.model.get_layer("zero_shot_head").get_config()["activation"], "softmax")
        self.assertEqual(self.model.get_layer("zero_shot_head").logit_bias, 0.0)

    def test_serialization_export_and_image_bytes_endpoint(self):
        self.run_serialization_test(self.model, self.images)
        self.run_export_test(self.model, self.images)
        path = os.path.join(self.get_temp_dir(), "bytes")
        export_zero_shot_classifier(self.model, path)
        restored = tf.saved_model.load(path)
        pixels = np.round(self.images).astype("uint8")
        encoded = tf.stack([tf.io.encode_png(p) for p in pixels])
        expected = self.model.predict(pixels.astype("float32"), verbose=0)
        self.assertAllClose(restored.serve_image_bytes(encoded), expected, atol=1e-5)
        self.assertAllClose(restored.serve(pixels.astype("float32")), expected, atol=1e-5)

    def test_fine_tune_then_wise_ft_interpolates_weights(self):
        clip, tokenizer = build(seed=3)
        zero_shot = build_zero_shot_classifier(clip, NAMES, TEMPLATES, tokenizer)
        fine_tuned = keras.models.clone_model(zero_shot)
        fine_tuned.set_weights(zero_shot.get_weights())
        fine_tuned.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
        self.run_fit_test(fine_tuned, self.images, self.labels, batch_size=5, steps=2)
        for alpha in (0.0, 1.0):
            mixed = wise_ft(zero_shot, fine_tuned, alpha=alpha)
            reference = zero_shot if alpha == 0.0 else fine_tuned
            self.assertAllClose(
                mixed.predict(self.images, verbose=0), reference.predict(self.images, verbose=0), atol=1e-6
            )
        mixed = wise_ft(zero_shot, fine_tuned, alpha=0.3)
        for got, a, b in zip(mixed.get_weights(), zero_shot.get_weights(), fine_tuned.get_weights()):
            self.assertAllClose(got, 0.7 * a + 0.3 * b, atol=1e-6)

    def test_mixed_precision(self):
        def build_and_compile():
            clip, tokenizer = build()
            model = build_zero_shot_classifier(clip, NAMES, TEMPLATES, tokenizer)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            return model

        model, _ = self.run_mixed_precision_test(build_and_compile, self.images, self.labels, batch_size=5)
        self.assertEqual(model.predict(self.images, verbose=0).dtype, np.float32)

    def test_errors(self):
        build_fn = build_zero_shot_classifier
        self.assertRaisesValueError(
            "`class_names` must contain at least one class name", build_fn, self.clip, [], TEMPLATES, self.tokenizer
        )
        self.assertRaisesValueError(
            "`class_names` must be a list of strings", build_fn, self.clip, "cat", TEMPLATES, self.tokenizer
        )
        self.assertRaisesValueError(
            "`class_names` must be unique", build_fn, self.clip, ["cat", "cat"], TEMPLATES, self.tokenizer
        )
        self.assertRaisesValueError(
            "must not contain empty names", build_fn, self.clip, ["cat", " "], TEMPLATES, self.tokenizer
        )
        for bad in ("a photo of a cat", "a {} and a {}", "{name}"):
            self.assertRaisesValueError(
                ["exactly one '{}'", repr(bad)], build_fn, self.clip, NAMES, [bad], self.tokenizer
            )
        self.assertRaisesValueError("escape other braces", build_fn, self.clip, NAMES, ["a {} }"], self.tokenizer)
        self.assertRaisesValueError(
            "`templates` must contain at least one", build_fn, self.clip, NAMES, [], self.tokenizer
        )
        self.assertRaisesValueError("`tokenizer` must be callable", build_fn, self.clip, NAMES, TEMPLATES, None)
        self.assertRaisesValueError(
            ["`activation` must be one of ['softmax', 'sigmoid']", "activation='siglip'"],
            build_fn,
            self.clip,
            NAMES,
            TEMPLATES,
            self.tokenizer,
            activation="siglip",
        )
        self.assertRaisesValueError(
            "`logit_bias` must be a finite number",
            build_fn,
            self.clip,
            NAMES,
            TEMPLATES,
            self.tokenizer,
            logit_bias="b",
        )
        self.assertRaisesValueError("`alpha` must be a number in [0, 1]", wise_ft, self.model, self.model, 1.5)
        other = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        self.assertRaisesValueError("must have the same architecture", wise_ft, self.model, other)
        self.assertRaisesValueError("`fine_tuned_model` must be a keras.Model", wise_ft, self.model, "x")
        self.assertRaisesValueError(
            "must take fixed-size images",
            export_zero_shot_classifier,
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
            "/tmp/x",
        )
