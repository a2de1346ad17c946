"""Fine-tuning on embedded data: pretrain on digits 0-4, transfer to 5-9 with 3 labels per class.

    python examples/fine_tune_digits.py [--backbone simple_cnn] [--labels 3] [--epochs 20]

Compares a linear probe, surgical fine-tuning of the first / last blocks, and LP-FT with
discriminative learning rates; saves the LP-FT model to .keras and exports a SavedModel.
"""

import argparse

import keras

import keras_transfer as kt


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    split = kt.datasets.digits_source_target(
        image_size=args.image_size, labels_per_class=args.labels, seed=args.seed
    )
    source = kt.recipes.build_classifier(args.backbone, 5, split.source_train[0].shape[1:])
    kt.recipes.compile_for_fine_tuning(source, learning_rate=2e-3)
    source.fit(*split.source_train, epochs=args.epochs, batch_size=32, verbose=2)
    print("source accuracy", kt.recipes.evaluate_accuracy(source, *split.source_test))
    print("blocks:", list(kt.recipes.backbone_blocks(kt.recipes.get_backbone(source))))

    results = {}
    probe = kt.recipes.replace_head(source, 5)
    kt.recipes.freeze_backbone(probe)
    kt.recipes.linear_probe(probe, *split.target_train)
    results["linear probe"] = kt.recipes.evaluate_accuracy(probe, *split.target_test)
    for blocks in ("first", "last"):
        model = kt.recipes.replace_head(source, 5)
        kt.recipes.fine_tune(model, *split.target_train, probe="convex", blocks=blocks,
                             epochs=args.epochs, learning_rate=1e-3, batch_size=16, verbose=0)
        results[f"LP-FT, {blocks} blocks only"] = kt.recipes.evaluate_accuracy(model, *split.target_test)
    model = kt.recipes.replace_head(source, 5)
    kt.recipes.fine_tune(model, *split.target_train, probe="convex", epochs=args.epochs, learning_rate=1e-3,
                         backbone_multiplier=0.3, layer_decay=0.8, batch_size=16, verbose=0)
    results["LP-FT, all blocks, layer-wise decay"] = kt.recipes.evaluate_accuracy(model, *split.target_test)
    print(kt.recipes.trainable_report(model))
    for name, accuracy in results.items():
        print(f"{name:40s} {accuracy:.3f}")
    model.save("fine_tuned_digits.keras")
    model.export("fine_tuned_digits_savedmodel", verbose=False)


if __name__ == "__main__":
    main()
