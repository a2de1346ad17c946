"""Fine-tune a keras.applications backbone on your own folder of images.

    python examples/finetune_image_folder.py photos/ --backbone efficientnet_b0 --weights imagenet

`photos/` is photos/<label>/*.jpg or photos/<split>/<label>/*.jpg. The same job is
`keras-transfer finetune --data photos/ ...` on the command line.
"""

import argparse

from keras_transfer.recipes.finetune_job import finetune_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    _, summary = finetune_folder(
        args.data, backbone=args.backbone, weights=args.weights, image_size=args.image_size,
        epochs=args.epochs, export="exported_model", save="model.keras",
    )
    print(summary)


if __name__ == "__main__":
    main()
