"""Build a small sentiment model locally, so the examples and tests download nothing.

    python examples/build_model.py examples/models/tiny-sentiment

It writes a DistilBERT-architecture classifier and a WordPiece tokenizer, trained for a few
seconds on a synthetic vocabulary so its labels mean something. Loading it goes through the real
``transformers.pipeline(..., model=<dir>)`` code path; pass a hub id instead to use a real model.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

POSITIVE = "good great excellent love wonderful happy fast amazing nice fine best perfect".split()
NEGATIVE = "bad awful terrible hate slow broken sad worst poor wrong ugly useless".split()
NEUTRAL = "the a movie service it was is model server this that food day and very".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_sentence(rng: random.Random, positive: bool, length: int = 8) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(length)]
    for i in rng.sample(range(length), k=max(1, length // 3)):
        words[i] = rng.choice(POSITIVE if positive else NEGATIVE)
    return " ".join(words)


def build(out_dir: str | Path, seed: int = 0, train_steps: int = 60) -> Path:
    import torch
    from transformers import (
        BertTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL) + "\n")
        # DistilBERT takes no token_type_ids; saying so keeps transformers 4.4x pipelines happy.
        # transformers 5 takes the vocabulary as `vocab` (a `vocab_file` is silently ignored).
        tokenizer = BertTokenizer(
            vocab=str(vocab),
            do_lower_case=True,
            model_input_names=["input_ids", "attention_mask"],
            model_max_length=512,
        )
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    model = DistilBertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(train_steps):
        labels = [rng.random() < 0.5 for _ in range(16)]
        batch = tokenizer([synthetic_sentence(rng, y) for y in labels], padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([int(y) for y in labels])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="examples/models/tiny-sentiment")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print(build(args.out_dir, train_steps=args.steps))


if __name__ == "__main__":
    main()
