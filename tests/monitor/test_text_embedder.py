"""The text embedder: padding to each batch's longest row, masked pooling, exact vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.monitor.embedder import EmbedderError, OnnxEmbedder
from service.monitor.settings import EmbedderSettings
from service.monitor.token_batches import TokenBatcher

pytest.importorskip("tokenizers")

from tests.support.text_model import (  # noqa: E402 - after the skip
    reference_pooled,
    write_attention_model,
    write_tokenizer,
)

TEXTS = [
    "stock market fell",
    "the team won the cup final",
    "bank rates rose and shares fell in the market",
    "goal",
    "the coach of the team lost it in the season and the league final",
    "",
]


def _settings(model: Path, tokenizer: Path, **extra: object) -> EmbedderSettings:
    return EmbedderSettings.model_validate(
        {"path": model, "input": "text", "tokenizer": tokenizer, **extra}
    )


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "tokenizer.json")


def _bytes(texts: list[str]) -> np.ndarray:
    return np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)


def test_pooled_vectors_do_not_depend_on_padding_or_batching(
    tmp_path: Path, tokenizer: Path
) -> None:
    from tokenizers import Tokenizer

    model = write_attention_model(tmp_path / "m.onnx")
    embedder = OnnxEmbedder(_settings(model, tokenizer, batch_size=4))
    together = embedder.embed(_bytes(TEXTS))
    alone = np.concatenate([embedder.embed(_bytes([t])) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    # ...and both equal the model computed in numpy on the unpadded tokens.
    encoder = Tokenizer.from_file(str(tokenizer))
    for row, text in enumerate(TEXTS):
        encoding = encoder.encode(text)
        expected = reference_pooled(encoding.ids, encoding.type_ids)
        np.testing.assert_allclose(together[row], expected, atol=1e-5, rtol=0)


def test_padding_to_max_length_gives_the_same_vectors(tmp_path: Path, tokenizer: Path) -> None:
    """What the embedder did before: every text padded to max_length (here 64)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model = write_attention_model(tmp_path / "m.onnx")
    ours = OnnxEmbedder(_settings(model, tokenizer, max_length=64)).embed(_bytes(TEXTS))
    encoder = Tokenizer.from_file(str(tokenizer))
    encoder.enable_padding(length=64)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for row, text in enumerate(TEXTS):
        e = encoder.encode(text)
        feeds = {
            "input_ids": np.array([e.ids], np.int64),
            "attention_mask": np.array([e.attention_mask], np.int64),
            "token_type_ids": np.array([e.type_ids], np.int64),
        }
        (tokens,) = session.run(["tokens"], feeds)
        mask = np.array(e.attention_mask, np.float64)
        naive = (tokens[0] * mask[:, None]).sum(axis=0) / mask.sum()
        np.testing.assert_allclose(ours[row], naive, atol=1e-5, rtol=0)


def test_batches_are_sorted_by_length_and_padded_to_their_longest(tokenizer: Path) -> None:
    from tokenizers import Tokenizer

    batcher = TokenBatcher(Tokenizer.from_file(str(tokenizer)), max_length=6, batch_size=2)
    seen = []
    for batch in batcher.batches(TEXTS):
        lengths = batch.attention_mask.sum(axis=1)
        seen.append((batch.rows.tolist(), batch.input_ids.shape, lengths.tolist()))
    # Token counts ([CLS] + words + [SEP], truncated at 6): 5, 8->6, 11->6, 3, 16->6, 2.
    assert seen == [
        ([5, 3], (2, 3), [2, 3]),
        ([0, 1], (2, 6), [5, 6]),
        ([2, 4], (2, 6), [6, 6]),
    ]


def test_a_batch_holds_at_most_a_quarter_padding(tokenizer: Path) -> None:
    from tokenizers import Tokenizer

    batcher = TokenBatcher(Tokenizer.from_file(str(tokenizer)), max_length=16, batch_size=8)
    shapes = [batch.input_ids.shape for batch in batcher.batches(TEXTS)]
    # Sorted counts 2, 3, 5, 8, 11, 16: {2, 3} pads 1 token for 5 real ones, adding 5 would
    # pad 5 for 10; {5, 8} pads 3 for 13, adding 11 would pad 9 for 24; {11, 16} pads 5 for 27.
    assert shapes == [(2, 3), (2, 8), (2, 16)]
    no_padding = TokenBatcher(
        Tokenizer.from_file(str(tokenizer)), max_length=6, batch_size=8, padding_ratio=0.0
    )
    shapes = [b.input_ids.shape for b in no_padding.batches(TEXTS)]
    assert shapes == [(1, 2), (1, 3), (1, 5), (3, 6)]


def test_rows_keep_their_order_and_normalize_gives_unit_vectors(
    tmp_path: Path, tokenizer: Path
) -> None:
    model = write_attention_model(tmp_path / "m.onnx")
    plain = OnnxEmbedder(_settings(model, tokenizer, batch_size=2)).embed(_bytes(TEXTS))
    unit = OnnxEmbedder(_settings(model, tokenizer, batch_size=2, normalize=True)).embed(
        _bytes(TEXTS)
    )
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-12
    )
    reversed_rows = OnnxEmbedder(_settings(model, tokenizer, batch_size=2)).embed(
        _bytes(TEXTS[::-1])
    )
    np.testing.assert_allclose(reversed_rows[::-1], plain, atol=1e-6)


def test_a_pooled_output_is_used_as_it_is(tmp_path: Path, tokenizer: Path) -> None:
    tokens = write_attention_model(tmp_path / "tokens.onnx")
    pooled = write_attention_model(tmp_path / "pooled.onnx", pooled=True)
    a = OnnxEmbedder(_settings(tokens, tokenizer)).embed(_bytes(TEXTS))
    pooled_embedder = OnnxEmbedder(_settings(pooled, tokenizer))
    assert pooled_embedder.dims == 8
    np.testing.assert_allclose(pooled_embedder.embed(_bytes(TEXTS)), a, atol=1e-5)


def test_a_model_without_attention_mask_is_never_padded(tmp_path: Path, tokenizer: Path) -> None:
    """Padding would reach its attention, so each batch holds texts of one length only."""
    model = write_attention_model(tmp_path / "m.onnx", with_mask=False, with_types=False)
    embedder = OnnxEmbedder(_settings(model, tokenizer, batch_size=8))
    together = embedder.embed(_bytes(TEXTS))
    alone = np.concatenate([embedder.embed(_bytes([t])) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_text_model_inputs_are_checked_at_load(tmp_path: Path, tokenizer: Path) -> None:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["out"])],
        "g",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 4])],
    )
    path = tmp_path / "numeric.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(EmbedderError, match="takes inputs pixels; a text model takes input_ids"):
        OnnxEmbedder(_settings(path, tokenizer))


def test_numeric_rows_are_refused_by_a_text_embedder(tmp_path: Path, tokenizer: Path) -> None:
    embedder = OnnxEmbedder(_settings(write_attention_model(tmp_path / "m.onnx"), tokenizer))
    with pytest.raises(EmbedderError, match="needs BYTES rows, got float"):
        embedder.embed(np.zeros((2, 3)))
    assert embedder.embed(np.empty((0, 1), dtype=object)).shape == (0, 8)
