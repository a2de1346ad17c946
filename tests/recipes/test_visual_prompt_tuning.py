import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.layers import PatchEmbedding
from keras_transfer.layers import ViTBlock
from keras_transfer.recipes import add_visual_prompts
from tests.test_case import TestCase

P = 3  # prompts


def keras_hub_vit(dtype=None):
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is an optional extra")
    vit = keras_hub.models.ViTBackbone(
        image_shape=(4, 4, 1), patch_size=2, num_layers=2, num_heads=2, hidden_dim=4, mlp_dim=8, dtype=dtype
    )
    images = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(2, name="head", dtype=dtype)(vit(images)[:, 0])
    return keras.Model(images, logits), vit


def own_vit():
    """A small ViT without keras-hub: PatchEmbedding, two ViTBlocks, LayerNorm, class-token head."""
    images = keras.Input((4, 4, 1))
    x = PatchEmbedding(2, 4, name="embed")(images)
    x = ViTBlock(2, 8, name="block_1")(x)
    x = ViTBlock(2, 8, name="block_2")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln")(x)
    return keras.Model(images, keras.layers.Dense(2, name="head")(x[:, 0]))


def prompts_of(model):
    return [np.asarray(w) for w in model.trainable_weights if w.path.endswith("prompts")]


class VisualPromptTuningTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x = np.random.default_rng(0).normal(size=(4, 4, 4, 1)).astype("float32")
        self.y = np.array([0, 1, 1, 0])

    def test_keras_hub_shallow_and_deep_equal_manual_loops(self):
        model, vit = keras_hub_vit()
        embed, encoder, head = (
            vit.get_layer("vit_patching_and_embedding"),
            vit.get_layer("vit_encoder"),
            model.get_layer("head"),
        )
        tokens = np.array(embed(self.x))
        for deep in (False, True):
            prompted = add_visual_prompts(model, P, deep=deep, seed=0)
            prompts = prompts_of(prompted)
            self.assertLen(prompts, 2 if deep else 1)
            x = np.concatenate([tokens[:, :1], np.broadcast_to(prompts[0], (4, P, 4)), tokens[:, 1:]], axis=1)
            if deep:  # layer by layer, the prompt outputs replaced by the next layer's prompts
                for i, block in enumerate(encoder.encoder_layers):
                    x[:, 1 : 1 + P] = prompts[i]
                    x = np.array(block(x))
                x = np.asarray(encoder.layer_norm(x))
            else:  # keras-hub's own encoder on [cls, prompts, patches]
                x = np.asarray(encoder(x))
            self.assertAllClose(prompted(self.x), head(x[:, 0]), atol=1e-5)
        self.assertNotAllClose(prompted(self.x), model(self.x))

    def test_own_vit_shallow_equals_manual(self):
        model = own_vit()
        prompted = add_visual_prompts(model, P, seed=0)
        (prompts,) = prompts_of(prompted)
        tokens = np.asarray(model.get_layer("embed")(self.x))
        x = np.concatenate([tokens[:, :1], np.broadcast_to(prompts, (4, P, 4)), tokens[:, 1:]], axis=1)
        for name in ("block_1", "block_2", "ln"):
            x = np.asarray(model.get_layer(name)(x))
        self.assertAllClose(prompted(self.x), model.get_layer("head")(x[:, 0]), atol=1e-5)
        self.assertEqual(
            [w.path for w in prompted.trainable_weights], ["block_1_prompts/prompts", "head/kernel", "head/bias"]
        )

    def test_fit_trains_only_prompts_and_head_then_export_and_reload(self):
        def build_and_compile():
            prompted = add_visual_prompts(keras_hub_vit()[0], P, deep=True)
            prompted.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(True))
            return prompted

        prompted = build_and_compile()
        self.assertEqual(len(prompted.trainable_weights), 4)
        self.run_fit_test(prompted, self.x, self.y, frozen=prompted.non_trainable_weights)
        self.run_export_test(prompted, self.x)  # straight after fit, as users do
        reloaded = self.run_serialization_test(prompted, self.x)
        self.assertEqual([w.path for w in reloaded.trainable_weights], [w.path for w in prompted.trainable_weights])
        self.run_mixed_precision_test(build_and_compile, self.x, self.y)

    def test_prompt_gradients_match_finite_differences(self):
        model, _ = keras_hub_vit(dtype="float64")
        prompted = add_visual_prompts(model, 1, deep=True, seed=0)
        variables = prompted.trainable_variables
        weights = np.random.default_rng(1).normal(size=(4, 2))  # one prompt per layer: 8 numbers

        def loss(first, second):
            values = [first, second] + [v.value for v in variables[2:]]
            non_trainable = [v.value for v in prompted.non_trainable_variables]
            out, _ = prompted.stateless_call(values, non_trainable, tf.constant(self.x, "float64"))
            return tf.reduce_sum(out * weights)

        self.run_gradient_check(loss, [np.asarray(variables[0]), np.asarray(variables[1])], eps=1e-6, atol=1e-7)

    def test_original_model_untouched(self):
        model, _ = keras_hub_vit()
        before = [np.asarray(w) for w in model.weights]
        add_visual_prompts(model, P, deep=True)
        self.assertEqual(len(model.trainable_weights), len(before))
        for w, b in zip(model.weights, before):
            self.assertAllClose(w, b, atol=0)

    def test_errors(self):
        model = own_vit()
        self.assertRaisesValueError(
            ["`num_prompts` must be a positive integer", "num_prompts=0", "num_prompts=10"],
            add_visual_prompts,
            model,
            0,
        )
        self.assertRaisesValueError(["`deep` must be True", "deep='yes'"], add_visual_prompts, model, 2, deep="yes")
        self.assertRaisesValueError("`insert_at` must leave room", add_visual_prompts, model, 2, insert_at=6)
        mlp = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        self.assertRaisesValueError(["`model` must hold transformer blocks", "Pass blocks="], add_visual_prompts, mlp)
        self.assertRaisesValueError("`blocks` matches no layer", add_visual_prompts, model, blocks="nothing")
        self.assertRaisesValueError(
            "`blocks` must take a (batch, tokens, dim)", add_visual_prompts, mlp, blocks="dense.*"
        )
        self.assertRaisesValueError("`model` must be a keras.Model", add_visual_prompts, "vit")
