"""Feature extraction from raw samples: text, numeric, categorical and prediction columns."""

from __future__ import annotations

import math
from typing import Any

from infersight.drift.features import MAX_FEATURES, Schema, extract, text_stats


class FakeTokenizer:
    """Whitespace tokens; words outside the vocabulary are [UNK] (id 0)."""

    unk_token_id = 0

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = {w: i + 1 for i, w in enumerate(vocab)}
        self.calls = 0

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.calls += 1
        assert kwargs.get("add_special_tokens") is False
        return {"input_ids": [[self.vocab.get(w, 0) for w in t.split()] for t in texts]}


def test_text_stats_with_and_without_tokenizer() -> None:
    tok = FakeTokenizer(["good", "movie"])
    assert text_stats(["good movie", "good alien thing now"], tok) == [(10.0, 2.0, 0.0), (20.0, 4.0, 0.75)]
    assert text_stats(["a b c"], None) == [(5.0, 3.0, None)]
    assert text_stats([""], tok) == [(0.0, 0.0, 0.0)]


def test_pipeline_samples_single_and_batched_with_top_k() -> None:
    schema = Schema()
    tok = FakeTokenizer(["good", "bad"])
    schema.tokenizer = tok
    rows = extract(
        schema,
        [
            ("p", "good day", [{"label": "POSITIVE", "score": 0.9}]),
            (
                "p",
                ["bad", "good good"],
                [
                    {"label": "NEGATIVE", "score": 0.8},
                    [{"label": "NEGATIVE", "score": 0.3}, {"label": "POSITIVE", "score": 0.7}],
                ],
            ),
        ],
    )
    assert tok.calls == 1  # one batched tokenizer call per drain
    assert [r["text_tokens"] for r in rows] == [2.0, 1.0, 2.0]
    assert [r["text_unk_share"] for r in rows] == [0.5, 0.0, 0.0]
    assert [r["text_length_chars"] for r in rows] == [8.0, 3.0, 9.0]
    assert [r["prediction_label"] for r in rows] == ["POSITIVE", "NEGATIVE", "POSITIVE"]
    assert [r["prediction_score"] for r in rows] == [0.9, 0.8, 0.7]
    assert schema.kinds["prediction_label"] == "categorical"
    assert schema.kinds["text_tokens"] == "numeric"


def test_custom_features_kinds_are_declared_or_fixed_on_first_sight() -> None:
    schema = Schema()
    schema.declare(numeric=["price"], categorical=["zip"], text=["query"])
    rows = extract(
        schema,
        [
            (
                "c",
                {"price": "12.5", "zip": 75001, "flag": True, "n": 3, "query": "a b"},
                {"label": 1, "score": 0.4, "confidence": 0.9},
            ),
            ("c", {"price": "oops", "zip": None, "flag": False, "n": "seven", "query": 5}, None),
        ],
    )
    first, second = rows
    assert first["price"] == 12.5 and first["zip"] == "75001" and first["flag"] == "True"
    assert first["n"] == 3.0 and first["query_length_chars"] == 3.0 and first["query_tokens"] == 2.0
    assert "query_unk_share" not in first  # no tokenizer: no unknown-token share
    assert first["prediction_label"] == "1" and first["prediction_confidence"] == 0.9
    assert math.isnan(second["price"]) and math.isnan(second["n"]) and second["zip"] is None
    # "oops", None (zip), "seven" and a non-string text are the four invalid values.
    assert schema.invalid == 4
    assert schema.kinds == {
        "price": "numeric",
        "zip": "categorical",
        "flag": "categorical",
        "n": "numeric",
        "query_length_chars": "numeric",
        "query_tokens": "numeric",
        "prediction_label": "categorical",
        "prediction_score": "numeric",
        "prediction_confidence": "numeric",
    }


def test_at_most_max_features_columns() -> None:
    schema = Schema()
    extract(schema, [("c", {f"f{i}": 1.0 for i in range(MAX_FEATURES + 25)}, None)])
    assert len(schema.kinds) == MAX_FEATURES
    assert schema.dropped_features == 25


def test_pipeline_outputs_other_than_label_and_score() -> None:
    schema = Schema()
    rows = extract(
        schema,
        [
            ("p", "translate this", [{"translation_text": "traduis ceci maintenant"}]),
            ("p", "find names", [{"entity": "PER", "score": 0.9, "word": "Ada", "start": 0}]),
            ("p", None, [{"label": "cat", "score": 0.6}]),  # an image input, not kept
        ],
    )
    assert rows[0] == {"text_length_chars": 14.0, "text_tokens": 2.0, "output_length_chars": 23.0, "output_tokens": 3.0}
    assert rows[1] == {"text_length_chars": 10.0, "text_tokens": 2.0, "prediction_score": 0.9}
    assert rows[2] == {"prediction_label": "cat", "prediction_score": 0.6}
