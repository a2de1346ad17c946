import os
import subprocess
import sys
import unittest

import keras
import numpy as np

from keras_transfer.models import CLIP
from keras_transfer.recipes import build_zero_shot_classifier
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_backbone():
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=4, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=16, image_shape=(8, 8, 3)
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=20,
        embedding_dim=8,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        max_sequence_length=6,
    )
    return keras_hub.models.CLIPBackbone(vision, text, projection_dim=6)


@unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
class CLIPFromKerasHubTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        cls.backbone = tiny_backbone()
        cls.data = {
            "images": rng.uniform(size=(4, 8, 8, 3)).astype("float32"),
            "token_ids": rng.integers(1, 20, size=(4, 6)).astype("int32"),
        }
        cls.model = CLIP.from_keras_hub(cls.backbone)

    def test_logits_equal_keras_hub_backbone(self):
        expected = self.backbone.predict(self.data, verbose=0)["vision_logits"]
        out = self.model.predict(self.data, verbose=0)
        logits = self.model.get_logit_scale() * out["image_embeddings"] @ out["text_embeddings"].T
        self.assertAllClose(logits, expected, atol=1e-4, rtol=1e-4)

    def test_fit_save_and_zero_shot(self):
        model = CLIP.from_keras_hub(tiny_backbone())
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model(self.data)
        self.run_fit_test(model, self.data, batch_size=4, steps=2)
        self.run_serialization_test(model, self.data)
        tokenizer = lambda texts: {"token_ids": np.array([[len(t) % 19 + 1] * 6 for t in texts], "int32")}  # noqa: E731
        classifier = build_zero_shot_classifier(model, ["a", "bb"], ["{}", "x {}"], tokenizer)
        self.assertEqual(classifier.predict(self.data["images"], verbose=0).shape, (4, 2))

    def test_errors(self):
        self.assertRaisesValueError("must be a keras_hub.models.CLIPBackbone", CLIP.from_keras_hub, 3)


class WithoutKerasHubTest(TestCase):
    def test_clip_trains_and_zero_shots_when_keras_hub_cannot_be_imported(self):
        code = (
            "import sys; sys.modules['keras_hub'] = None\n"
            "import numpy as np, keras\n"
            "from keras_transfer.layers import TextTransformerEncoder, word_tokenizer\n"
            "from keras_transfer.models import CLIP\n"
            "from keras_transfer.recipes import build_zero_shot_classifier\n"
            "tok = word_tokenizer(['a b', 'c'], sequence_length=3)\n"
            "img = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])\n"
            "m = CLIP(img, TextTransformerEncoder(tok.vocabulary_size(), 3, 8, 1, 2), projection_dim=4)\n"
            "m.compile(optimizer='adam')\n"
            "h = m.fit(np.ones((4, 4, 4, 1), 'float32'), tok(['a', 'b', 'c', 'a b']), batch_size=4, verbose=0)\n"
            "zs = build_zero_shot_classifier(m, ['a', 'c'], ['{}'], tok)\n"
            "print('OK', h.history['loss'][0], zs.predict(np.ones((2, 4, 4, 1)), verbose=0).shape)\n"
            "try:\n    CLIP.from_keras_hub('clip_vit_base_patch32')\n"
            "except ValueError as e:\n    print('HUB', 'pip install keras-hub' in str(e))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
        self.assertIn("OK", result.stdout, result.stderr[-3000:])
        self.assertIn("(2, 2)", result.stdout)
        self.assertIn("HUB True", result.stdout)
