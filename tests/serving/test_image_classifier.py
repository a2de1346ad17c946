import base64
import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import compile_for_fine_tuning
from keras_transfer.serving import export_image_classifier
from tests.test_case import TestCase

NAMES = ["zero", "one", "two"]


def rest_predict(signature, body):
    """Answers a TF Serving REST `:predict` body as the server does (row format).

    TF Serving (json_tensor.cc) reads `instances` as one value per example for a
    single-input signature, decodes `{"b64": ...}` objects to bytes, stacks them
    into the input tensor, and writes one `{output: value}` object per example.
    """
    request = json.loads(body)
    ((name, spec),) = signature.structured_input_signature[1].items()
    values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in request["instances"]]
    outputs = signature(**{name: tf.constant(values, dtype=spec.dtype)})
    rows = []
    for i in range(len(values)):
        row = {}
        for key, tensor in outputs.items():
            value = tensor[i].numpy()
            row[key] = [v.decode() if isinstance(v, bytes) else float(v) for v in value.tolist()]
        rows.append(row)
    return json.dumps({"predictions": rows})


class ExportImageClassifierTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        cls.x = rng.integers(0, 256, size=(7, 16, 16, 3)).astype("uint8")
        cls.y = np.array([0, 1, 2, 0, 1, 2, 0])
        model = build_classifier("simple_cnn", 3, (16, 16, 3))
        compile_for_fine_tuning(model)
        model.fit(cls.x.astype("float32"), cls.y, epochs=1, verbose=0)
        cls.model = model
        cls.directory = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kt_serving_{os.getpid()}")
        cls.path = os.path.join(cls.directory, "served")
        export_image_classifier(model, cls.path, class_names=NAMES)  # straight after fit
        cls.served = tf.saved_model.load(cls.path)

    @classmethod
    def tearDownClass(cls):
        import shutil

        shutil.rmtree(cls.directory, ignore_errors=True)
        super().tearDownClass()

    def test_float_endpoint_equals_predict(self):
        for batch in (1, 7):
            images = self.x[:batch].astype("float32")
            out = self.served.signatures["serving_default"](images=tf.constant(images))
            self.assertAllClose(out["scores"], self.model.predict(images, verbose=0), atol=1e-5)
            self.assertEqual(out["classes"].numpy().tolist(), [[n.encode() for n in NAMES]] * batch)

    def test_png_bytes_equal_predict_on_the_pixels(self):
        data = tf.stack([tf.io.encode_png(image) for image in self.x])
        out = self.served.signatures["serve_image_bytes"](image_bytes=data)
        self.assertAllClose(out["scores"], self.model.predict(self.x.astype("float32"), verbose=0), atol=1e-5)

    def test_jpeg_any_size_alpha_and_grey(self):
        jpeg = tf.io.encode_jpeg(self.x[0], quality=90)
        big = tf.io.encode_png(np.repeat(np.repeat(self.x[1], 2, axis=0), 2, axis=1))
        rgba = tf.io.encode_png(np.concatenate([self.x[2], np.full((16, 16, 1), 7, "uint8")], -1))
        grey = tf.io.encode_png(self.x[3][..., :1])
        out = self.served.signatures["serve_image_bytes"](image_bytes=tf.stack([jpeg, big, rgba, grey]))
        expected_pixels = np.stack(
            [
                tf.io.decode_jpeg(jpeg, channels=3).numpy(),
                tf.image.resize(tf.cast(tf.io.decode_png(big), "float32"), (16, 16)).numpy(),
                self.x[2],
                np.repeat(self.x[3][..., :1], 3, axis=-1),
            ]
        ).astype("float32")
        self.assertAllClose(out["scores"], self.model.predict(expected_pixels, verbose=0), atol=1e-5)

    def test_rest_body_with_b64_images(self):
        body = json.dumps(
            {
                "signature_name": "serve_image_bytes",
                "instances": [
                    {"b64": base64.b64encode(tf.io.encode_png(image).numpy()).decode()} for image in self.x[:2]
                ],
            }
        )
        response = json.loads(rest_predict(self.served.signatures["serve_image_bytes"], body))
        expected = self.model.predict(self.x[:2].astype("float32"), verbose=0)
        self.assertLen(response["predictions"], 2)
        for row, scores in zip(response["predictions"], expected):
            self.assertEqual(row["classes"], NAMES)
            self.assertAllClose(np.array(row["scores"]), scores, atol=1e-5)

    def test_refuses_a_folder_with_files_unless_overwrite(self):
        folder = os.path.join(self.get_temp_dir(), "export")
        os.makedirs(folder)
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("mine")
        self.assertRaisesValueError(
            ["already holds files", "overwrite=True"], export_image_classifier, self.model, folder
        )
        self.assertRaisesValueError(["not a SavedModel"], export_image_classifier, self.model, folder, overwrite=True)
        self.assertEqual(os.listdir(folder), ["notes.txt"])

    def test_overwrite_replaces_an_export_without_stale_files(self):
        folder = os.path.join(self.get_temp_dir(), "export")
        export_image_classifier(self.model, folder, class_names=NAMES)
        with open(os.path.join(folder, "assets", "stale.txt"), "w") as f:
            f.write("old")
        export_image_classifier(self.model, folder, class_names=["a", "b", "c"], overwrite=True)
        self.assertFalse(os.path.exists(os.path.join(folder, "assets", "stale.txt")))
        self.assertEqual(os.listdir(os.path.dirname(folder)), ["export"])
        out = tf.saved_model.load(folder).signatures["serving_default"](images=tf.constant(self.x[:1], "float32"))
        self.assertEqual(out["classes"].numpy().tolist(), [[b"a", b"b", b"c"]])

    def test_argument_errors(self):
        folder = os.path.join(self.get_temp_dir(), "e")
        self.assertRaisesValueError(
            ["`class_names` must hold 3 distinct names", "['a', 'b']"],
            export_image_classifier,
            self.model,
            folder,
            class_names=["a", "b"],
        )
        self.assertRaisesValueError(
            "`class_names` must hold 3 distinct",
            export_image_classifier,
            self.model,
            folder,
            class_names=["a", "a", "b"],
        )
        self.assertRaisesValueError(
            "`image_size` must match", export_image_classifier, self.model, folder, image_size=(8, 8)
        )
        dynamic = keras.Sequential(
            [keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
        )
        self.assertRaisesValueError("`image_size` must be given", export_image_classifier, dynamic, folder)
        export_image_classifier(dynamic, folder, image_size=(5, 6))
        served = tf.saved_model.load(folder)
        out = served.signatures["serve_image_bytes"](image_bytes=tf.stack([tf.io.encode_png(self.x[0])]))
        resized = tf.image.resize(self.x[:1].astype("float32"), (5, 6))
        self.assertAllClose(out["scores"], dynamic.predict(resized, verbose=0), atol=1e-5)
        vector = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        self.assertRaisesValueError("`model` must take one batch of images", export_image_classifier, vector, folder)
        file_path = os.path.join(self.get_temp_dir(), "file")
        open(file_path, "w").close()
        self.assertRaisesValueError("must be a folder to create", export_image_classifier, self.model, file_path)


class ExportDANNLabelPathTest(TestCase):
    def test_dann_label_path_serves_encoded_images_straight_after_fit(self):
        from keras_transfer.datasets import domain_pairs
        from keras_transfer.models import DANN

        keras.utils.set_random_seed(1)
        features = keras.Sequential(
            [
                keras.Input((12, 12, 3)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
            ]
        )
        classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])  # logits, as DANN expects
        model = DANN(features, classifier)
        model.compile(keras.optimizers.SGD(0.1))
        rng = np.random.default_rng(2)
        source = rng.integers(0, 256, (8, 12, 12, 3)).astype("uint8")
        target = rng.integers(0, 256, (8, 12, 12, 3)).astype("uint8")
        model.fit(
            domain_pairs(source.astype("float32"), np.arange(8) % 2, target.astype("float32"), batch_size=4, seed=0),
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        path = os.path.join(self.get_temp_dir(), "dann")
        export_image_classifier(model, path, class_names=["cat", "dog"])
        served = tf.saved_model.load(path)
        expected = model.predict(target.astype("float32"), verbose=0)
        data = tf.stack([tf.io.encode_png(image) for image in target])
        out = served.signatures["serve_image_bytes"](image_bytes=data)
        self.assertAllClose(out["scores"], expected, atol=1e-5)
        self.assertEqual(out["classes"].numpy()[0].tolist(), [b"cat", b"dog"])
        with open(os.path.join(path, "class_names.txt")) as handle:
            self.assertEqual(handle.read().split(), ["cat", "dog"])
