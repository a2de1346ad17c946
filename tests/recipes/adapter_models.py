"""Small models shared by the adapter recipe tests (built fresh, seeded)."""

import keras
import numpy as np


def tiny_cnn(size=8, channels=3, classes=3, seed=0):
    """A classifier with a nested functional backbone (conv-BN-ReLU, strided conv, depthwise)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    bn = backbone.get_layer("bn1")
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.normal(size=8) * 0.3)
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=8))
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=8))
    bn.beta.assign(rng.normal(size=8) * 0.3)
    image = keras.Input((size, size, channels), name="image")
    h = backbone(image, training=False)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(h)
    return keras.Model(image, outputs, name="tiny_cnn")


def transformer_stack(seq=6, dim=16, heads=2, blocks=2, classes=3, seed=0):
    """A BERT-style post-norm encoder stack from Keras core layers (MHA + feed-forward)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((seq, dim), name="tokens")
    x = inputs
    for i in range(blocks):
        attn = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"mha_{i}")(x, x)
        x = keras.layers.LayerNormalization(name=f"ln_attn_{i}")(keras.layers.Add(name=f"res_attn_{i}")([x, attn]))
        h = keras.layers.Dense(2 * dim, activation="gelu", name=f"ffn_in_{i}")(x)
        h = keras.layers.Dense(dim, name=f"ffn_out_{i}")(h)
        x = keras.layers.LayerNormalization(name=f"ln_ffn_{i}")(keras.layers.Add(name=f"res_ffn_{i}")([x, h]))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="head")(x)
    return keras.Model(inputs, outputs, name="encoder")


def compiled(model, lr=0.05):
    """`model` compiled for the 3-class tests (Adam, sparse categorical cross-entropy)."""
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    return model
