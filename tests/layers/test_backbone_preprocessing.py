import numpy as np
import tensorflow as tf
from keras import applications

from keras_transfer.layers import BackbonePreprocessing
from keras_transfer.recipes import BACKBONES
from tests.test_case import TestCase

# The keras.applications module whose `preprocess_input` each registry family uses.
_MODULES = {
    "MobileNet": applications.mobilenet,
    "MobileNetV2": applications.mobilenet_v2,
    "MobileNetV3Small": applications.mobilenet_v3,
    "MobileNetV3Large": applications.mobilenet_v3,
    "ResNet50": applications.resnet50,
    "ResNet101": applications.resnet,
    "ResNet152": applications.resnet,
    "ResNet50V2": applications.resnet_v2,
    "ResNet101V2": applications.resnet_v2,
    "ResNet152V2": applications.resnet_v2,
    "DenseNet121": applications.densenet,
    "DenseNet169": applications.densenet,
    "DenseNet201": applications.densenet,
    "Xception": applications.xception,
    "VGG16": applications.vgg16,
    "VGG19": applications.vgg19,
    "InceptionV3": applications.inception_v3,
    "InceptionResNetV2": applications.inception_resnet_v2,
    "NASNetMobile": applications.nasnet,
}


def _module_for(constructor):
    if constructor in _MODULES:
        return _MODULES[constructor]
    if constructor.startswith("EfficientNetV2"):
        return applications.efficientnet_v2
    if constructor.startswith("EfficientNet"):
        return applications.efficientnet
    if constructor.startswith("ConvNeXt"):
        return applications.convnext
    raise KeyError(constructor)


class BackbonePreprocessingTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.pixels = rng.uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")

    def reference(self, module):
        return np.asarray(module.preprocess_input(self.pixels.copy()))

    def test_each_mode_matches_keras_applications(self):
        references = {
            "tf": applications.mobilenet_v2,
            "caffe": applications.vgg16,
            "torch": applications.densenet,
            "none": applications.efficientnet,
        }
        for mode, module in references.items():
            out = BackbonePreprocessing(mode)(self.pixels)
            self.assertAllClose(out, self.reference(module), atol=1e-4, rtol=1e-5, msg=mode)
        # "unit" is keras_transfer's own scaling to [0, 1]: Keras' Rescaling layer is the reference.
        from keras.layers import Rescaling

        self.assertAllClose(BackbonePreprocessing("unit")(self.pixels), Rescaling(1.0 / 255)(self.pixels), atol=1e-6)

    def test_every_registry_family_matches_its_preprocess_input(self):
        for spec in BACKBONES.values():
            if spec.constructor == "simple_cnn":
                continue
            module = _module_for(spec.constructor)
            out = BackbonePreprocessing(spec.preprocess)(self.pixels)
            self.assertAllClose(out, self.reference(module), atol=1e-4, rtol=1e-5, msg=spec.name)

    def test_value_range(self):
        unit = self.pixels / 255.0
        signed = self.pixels / 127.5 - 1.0
        for mode, module in (
            ("tf", applications.resnet_v2),
            ("caffe", applications.resnet50),
            ("torch", applications.densenet),
            ("none", applications.convnext),
        ):
            expected = self.reference(module)
            self.assertAllClose(BackbonePreprocessing(mode, value_range=(0, 1))(unit), expected, atol=2e-3, rtol=1e-4)
            self.assertAllClose(
                BackbonePreprocessing(mode, value_range=(-1, 1))(signed), expected, atol=2e-3, rtol=1e-4
            )

    def test_harness(self):
        for mode in ("caffe", "torch"):
            self.run_layer_test(
                BackbonePreprocessing,
                {"mode": mode, "value_range": (0.0, 1.0)},
                input_shape=(2, 4, 4, 3),
                expected_output_shape=(2, 4, 4, 3),
                expected_num_trainable_weights=0,
                expected_num_non_trainable_weights=0,
                input_data=np.random.default_rng(1).uniform(size=(2, 4, 4, 3)).astype("float32"),
            )

    def test_gradient(self):
        layer = BackbonePreprocessing("torch", dtype="float64")
        x = np.random.default_rng(2).uniform(0, 255, size=(1, 2, 2, 3))
        self.run_gradient_check(lambda t: tf.reduce_sum(layer(t) ** 2), [x], eps=1e-3)

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`mode`", "mode='bgr'"], BackbonePreprocessing, mode="bgr")
        for bad in ((1, 1), (255, 0), (0,), "0-255", None):
            self.assertRaisesValueError(
                ["`value_range`", f"value_range={bad!r}"], BackbonePreprocessing, value_range=bad
            )
