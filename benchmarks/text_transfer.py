"""Text transfer beyond the cloze task: next-sentence prediction, adapter placement, vocabulary extension.

All on the sentences of the Python reference manual (`keras_transfer.datasets.load_python_docs`,
CPython's `pydoc_data.topics`; the test sentences of the 5-class task are never pre-trained on).
Each part is run over seeds (the seed draws the labelled subset, the init and the masks); every
row is a mean ± std. TensorFlow runs on one thread.

- `nsp`: a `TextTransformerEncoder(num_segments=2)` pre-trained by `MaskedLanguageModel` with the
  next-sentence head (`next_sentence=True`) on `[CLS] A [SEP] B [SEP]` pairs of consecutive
  sentences of each manual topic (`sentence_pairs`; first 3/4 of every topic), scored on pairs of
  the held-out last quarter of every topic, beside the same encoder pre-trained by cloze alone.
- `placement`: a small keras-hub `BertBackbone` (random init, offline) pre-trained by cloze, then
  fine-tuned on k labelled sentences per class (mean-pooled sequence output + softmax Dense) four
  ways: all weights, head only, `BottleneckAdapter`s after each transformer block
  (`add_adapters(..., "bottleneck")`) and Houlsby adapters inside each block after attention and
  after the MLP (`add_adapters(..., "houlsby")`); same epochs, adapters and head at a 4x higher
  learning rate than full fine-tuning (Houlsby et al.'s practice), or at each of
  `--adapter-learning-rates` (a sweep: one row per rate).
- `vocabulary`: a cloze-pre-trained encoder whose vocabulary is capped (`--source-tokens` words;
  the rest of the manual's words are out of vocabulary) meets the full text: either the OOV words
  stay `[UNK]`, or the `--new-tokens` most frequent of them are added by `extend_vocabulary`
  (new embedding rows = mean of the old ones); both continue cloze pre-training for the same
  epochs on the pre-training sentences, then are fine-tuned on k labels per class.

    python benchmarks/text_transfer.py [--quick] [--parts nsp placement vocabulary] [--seeds 0 1 2]
        [--budgets 20 100] [--pretrain-epochs 60] [--adapter-learning-rates 1e-4 3e-4 1e-3 2e-3]
"""

import argparse
import collections
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer as kt  # noqa: E402
from benchmarks import text_cloze  # noqa: E402
from benchmarks._common import mean_std  # noqa: E402
from benchmarks._common import one_thread  # noqa: E402
from benchmarks._common import print_table  # noqa: E402

PARTS = ("nsp", "placement", "vocabulary")


def _cosine_adamw(steps, learning_rate):
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=learning_rate, warmup_steps=steps // 10)
    return keras.optimizers.AdamW(schedule, weight_decay=0.01)


def _table(header, column, results, budgets):
    """One row per method: its `column` value, then mean ± std per label budget."""
    print_table(
        header + [f"{b} labels/class" for b in budgets],
        [[n, value] + [mean_std(results[(n, b)]) for b in budgets] for n, value in column.items()],
    )


# --------------------------------------------------------------------------------------- nsp
def topic_documents(test_fraction=0.25):
    """(pre-training documents, held-out documents): the sentences of every manual topic, in order."""
    from pydoc_data.topics import topics

    train, held_out = [], []
    for name in sorted(topics):
        sentences = kt.datasets.split_sentences(topics[name])
        cut = len(sentences) - int(round(test_fraction * len(sentences)))
        for part, target in ((sentences[:cut], train), (sentences[cut:], held_out)):
            if len(part) >= 2:
                target.append(part)
    return train, held_out


def run_nsp(args, seeds):
    train_docs, test_docs = topic_documents()
    if args.quick:
        train_docs, test_docs = train_docs[:6], test_docs[:6]
    words = kt.layers.word_tokenizer([s for d in train_docs for s in d], max_tokens=args.max_tokens).get_vocabulary()
    tokenizer = kt.layers.word_tokenizer(vocabulary=["[cls]", "[sep]", *words[2:]], sequence_length=args.pair_length)
    vocabulary_size = tokenizer.vocabulary_size()
    rows = collections.defaultdict(list)
    for seed in seeds:
        train, is_next = kt.datasets.sentence_pairs(train_docs, args.pair_length, word_tokenizer=tokenizer, seed=seed)
        test, test_is_next = kt.datasets.sentence_pairs(
            test_docs, args.pair_length, word_tokenizer=tokenizer, seed=seed
        )
        for next_sentence in (False, True):
            keras.utils.set_random_seed(seed)
            encoder = kt.layers.TextTransformerEncoder(
                vocabulary_size, args.pair_length, embedding_dim=args.dim, num_layers=args.layers,
                num_heads=max(1, args.dim // 32), pooling=None, num_segments=2,
            )  # fmt: skip
            model = kt.models.MaskedLanguageModel(
                encoder, vocabulary_size, next_sentence=next_sentence, unmaskable_ids=(2, 3), first_random_id=4,
                seed=seed,
            )  # fmt: skip
            steps = max(1, args.pretrain_epochs * (len(is_next) // 64))
            model.compile(optimizer=_cosine_adamw(steps, args.pretrain_learning_rate))
            start = time.time()
            model.fit(train, is_next if next_sentence else None, batch_size=64, epochs=args.pretrain_epochs, verbose=0)
            scores = model.evaluate(
                test, test_is_next if next_sentence else None, batch_size=256, verbose=0, return_dict=True
            )
            name = "cloze + next sentence" if next_sentence else "cloze only"
            rows[(name, "held-out masked accuracy")].append(scores["masked_accuracy"])
            if next_sentence:
                rows[(name, "held-out next-sentence accuracy")].append(scores["next_sentence_accuracy"])
            print(f"seed {seed} {name}: {scores} ({time.time() - start:.0f} s)", flush=True)
    print(
        f"\nNext-sentence prediction: {len(train_docs)} topic documents ({len(is_next)} pairs) for pre-training, "
        f"{len(test_docs)} held-out documents ({len(test_is_next)} pairs); encoder dim {args.dim}, {args.layers} "
        f"layers, {args.pretrain_epochs} epochs; seeds {seeds}:"
    )
    print_table(["pre-training", "metric", "value"], [[n, m, mean_std(v)] for (n, m), v in rows.items()])
    return {f"{n}: {m}": v for (n, m), v in rows.items()}


# --------------------------------------------------------------------------------- placement
def bert_backbone(vocabulary_size, length, dim, layers):
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=layers, num_heads=max(1, dim // 32), hidden_dim=dim,
        intermediate_dim=2 * dim, max_sequence_length=length,
    )  # fmt: skip


def bert_classifier(backbone, num_classes):
    """Mean of the sequence output over real tokens, then a softmax Dense."""
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in backbone.input}
    sequence = backbone(inputs)["sequence_output"]
    pooled = kt.layers.SequencePooling("mean", name="pool")(sequence, token_ids=inputs["token_ids"])
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax", name="head")(pooled))


def bert_inputs(token_ids):
    token_ids = np.asarray(token_ids, "int32")
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": (token_ids != 0).astype("int32"),
    }


def fit_classifier(model, x, y, x_test, y_test, epochs, learning_rate):
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    epochs = max(epochs, -(-20 // max(1, -(-len(y) // 16))))  # at least 20 steps
    model.fit(bert_inputs(x), y, batch_size=16, epochs=epochs, verbose=0)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return float(model.evaluate(bert_inputs(x_test), y_test, batch_size=256, verbose=0)[1]), trainable


def placement_variants(pretrained, num_classes, bottleneck):
    import keras_hub

    block = keras_hub.layers.TransformerEncoder

    def head_only():
        model = bert_classifier(pretrained, num_classes)
        pretrained.trainable = False
        return model

    return {
        "full fine-tuning": lambda: bert_classifier(pretrained, num_classes),
        "head only": head_only,
        "adapters after each block": lambda: kt.recipes.add_adapters(
            bert_classifier(pretrained, num_classes), block, "bottleneck", bottleneck_dim=bottleneck
        ),
        "Houlsby adapters inside each block": lambda: kt.recipes.add_adapters(
            bert_classifier(pretrained, num_classes), block, "houlsby", bottleneck_dim=bottleneck
        ),
    }


def run_placement(args, seeds, budgets):
    x_pre, (x_train, y_train), (x_test, y_test) = kt.datasets.load_python_docs(args.sequence_length, args.max_tokens)
    if args.quick:
        x_pre, x_test, y_test = x_pre[:64], x_test[::10], y_test[::10]
    vocabulary_size = kt.datasets.python_docs_tokenizer(args.sequence_length, args.max_tokens).vocabulary_size()
    num_classes = int(y_test.max()) + 1
    results, params, rows = collections.defaultdict(list), {}, {}
    adapter_rates = args.adapter_learning_rates or [4 * args.learning_rate]
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        backbone = bert_backbone(vocabulary_size, args.sequence_length, args.dim, args.layers)
        backbone, accuracy = text_cloze.pretrain(
            x_pre, vocabulary_size, args.dim, args.layers, args.pretrain_epochs, seed, args.pretrain_learning_rate,
            encoder=backbone,
        )  # fmt: skip
        weights = backbone.get_weights()
        print(f"seed {seed}: BERT pre-trained, last masked accuracy {accuracy:.3f}", flush=True)
        for budget in budgets:
            idx = text_cloze.labelled_subset(y_train, budget, seed)
            for name, build in placement_variants(backbone, num_classes, args.bottleneck).items():
                rates = [args.learning_rate] if name == "full fine-tuning" else adapter_rates
                for rate in rates:
                    backbone.set_weights(weights)
                    backbone.trainable = True
                    keras.utils.set_random_seed(seed)
                    score, params[name] = fit_classifier(
                        build(), x_train[idx], y_train[idx], x_test, y_test, args.finetune_epochs, rate
                    )
                    row = (
                        name
                        if name == "full fine-tuning" or not args.adapter_learning_rates
                        else f"{name}, lr {rate:g}"
                    )
                    results[(row, budget)].append(score)
                    rows[row] = f"{params[name]:,}"
                    print(f"  {budget}/class {row}: {score:.3f} ({params[name]:,} trainable)", flush=True)
    print(
        f"\nAdapter placement on a BERT ({args.layers} layers, hidden {args.dim}) pre-trained by cloze "
        f"({args.pretrain_epochs} epochs); bottleneck {args.bottleneck}; {args.finetune_epochs} epochs, lr "
        f"{args.learning_rate} (full) / {adapter_rates} (others); test n={len(y_test)}; seeds {seeds}:"
    )
    _table(["fine-tuning", "trainable parameters"], rows, results, budgets)
    return {f"{n} @ {b}": v for (n, b), v in results.items()} | {"trainable": params}


# -------------------------------------------------------------------------------- vocabulary
def run_vocabulary(args, seeds, budgets):
    _, (t_train, y_train), (t_test, y_test) = kt.datasets.load_python_docs(as_text=True)
    t_pre = kt.datasets.load_python_docs(as_text=True)[0]
    if args.quick:
        t_pre, t_test, y_test = t_pre[:128], t_test[::10], y_test[::10]
    length = args.sequence_length
    source = kt.layers.word_tokenizer(t_pre, sequence_length=length, max_tokens=args.source_tokens)
    full = kt.layers.word_tokenizer(t_pre, sequence_length=length)
    known = set(source.get_vocabulary())
    new_tokens = [w for w in full.get_vocabulary()[2:] if w not in known][: args.new_tokens]
    results = collections.defaultdict(list)
    oov = {}
    for seed in seeds:
        # The source model: cloze-pre-trained with the capped vocabulary.
        pretrained, _ = text_cloze.pretrain(
            np.asarray(source(t_pre)), source.vocabulary_size(), args.dim, args.layers, args.pretrain_epochs, seed,
            args.pretrain_learning_rate,
        )  # fmt: skip
        extended_tokenizer, extended = kt.recipes.extend_vocabulary(source, pretrained, new_tokens, init="mean")
        variants = (
            ("out-of-vocabulary words as [UNK]", source, pretrained),
            (f"+{len(new_tokens)} words (extend_vocabulary)", extended_tokenizer, extended),
        )
        for name, tokenizer, encoder in variants:
            test_ids = np.asarray(tokenizer(t_test))
            oov[name] = float((test_ids == 1).sum() / (test_ids > 0).sum())
            encoder, _ = text_cloze.pretrain(
                np.asarray(tokenizer(t_pre)), tokenizer.vocabulary_size(), args.dim, args.layers,
                args.continue_epochs, seed, args.pretrain_learning_rate / 2, encoder=encoder,
            )  # fmt: skip
            for budget in budgets:
                idx = text_cloze.labelled_subset(y_train, budget, seed)
                score = text_cloze.fine_tune(
                    encoder, np.asarray(tokenizer(t_train[idx])), y_train[idx], test_ids, y_test, args.dim,
                    args.layers, args.finetune_epochs, args.learning_rate, seed,
                )  # fmt: skip
                results[(name, budget)].append(score)
                print(f"seed {seed} {name} {budget}/class: {score:.3f}", flush=True)
    print(
        f"\nVocabulary extension: source vocabulary {args.source_tokens} ids, {args.pretrain_epochs} cloze epochs; "
        f"then {args.continue_epochs} more cloze epochs on the same sentences with either vocabulary; fine-tuning "
        f"{args.finetune_epochs} epochs; test n={len(y_test)}; seeds {seeds}:"
    )
    _table(
        ["vocabulary", "test words out of vocabulary"],
        {n: f"{100 * v:.1f} %" for n, v in oov.items()},
        results,
        budgets,
    )
    return {f"{n} @ {b}": v for (n, b), v in results.items()} | {"oov": oov}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 100], help="labels per class")
    parser.add_argument("--pretrain-epochs", type=int, default=60)
    parser.add_argument("--continue-epochs", type=int, default=20, help="vocabulary: continued pre-training")
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument(
        "--adapter-learning-rates", type=float, nargs="+", help="placement: rates for head/adapters (default 4x)"
    )
    parser.add_argument("--pretrain-learning-rate", type=float, default=2e-3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--bottleneck", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=24)
    parser.add_argument("--pair-length", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=1000)
    parser.add_argument("--source-tokens", type=int, default=500, help="vocabulary: the source model's cap")
    parser.add_argument("--new-tokens", type=int, default=500, help="vocabulary: words added")
    args = parser.parse_args(argv)
    one_thread()
    seeds, budgets = args.seeds, args.budgets
    if args.quick:
        seeds, budgets = [0], [5]
        args.pretrain_epochs, args.continue_epochs, args.finetune_epochs = 1, 1, 2
        args.dim, args.layers, args.pair_length, args.new_tokens, args.source_tokens = 32, 1, 16, 20, 100
    out = {}
    if "nsp" in args.parts:
        out["nsp"] = run_nsp(args, seeds)
    if "placement" in args.parts:
        out["placement"] = run_placement(args, seeds, budgets)
    if "vocabulary" in args.parts:
        out["vocabulary"] = run_vocabulary(args, seeds, budgets)
    return out


if __name__ == "__main__":
    main()
