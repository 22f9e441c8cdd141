"""A tiny text model for tests: a word-level tokenizer.json and a one-layer attention ONNX.

The model behaves as a BERT encoder does where it matters here: its token outputs mix
every token with the others through attention, and the attention mask keeps padding out.
So a pooled vector only equals the unpadded one when padding is masked properly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WORDS = (
    "the", "a", "of", "and", "to", "in", "is", "it", "on", "for", "stock", "market", "shares",
    "fell", "rose", "bank", "rates", "match", "goal", "team", "won", "lost", "season", "player",
    "coach", "cup", "final", "league",
)


def write_tokenizer(path: Path, words: tuple[str, ...] = WORDS) -> Path:
    """A whitespace word-level tokenizer with [PAD]=0, [UNK], [CLS] and [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.save(str(path))
    return path


def attention_weights(hidden: int = 8, vocab: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "table": rng.normal(size=(vocab, hidden)).astype(np.float32),
        "types": rng.normal(scale=0.5, size=(2, hidden)).astype(np.float32),
    }


def write_attention_model(
    path: Path,
    *,
    hidden: int = 8,
    vocab: int = 64,
    seed: int = 0,
    with_mask: bool = True,
    with_types: bool = True,
    pooled: bool = False,
) -> Path:
    """One self-attention layer over word (+ type) embeddings; token outputs (b, s, hidden).

    `pooled` adds a masked mean inside the graph and outputs (b, hidden) as `pooled`.
    """
    weights = attention_weights(hidden, vocab, seed)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["words"])]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])]
    embedded = "words"
    if with_types:
        inputs.append(
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["b", "s"])
        )
        nodes += [
            helper.make_node("Gather", ["types", "token_type_ids"], ["typed"]),
            helper.make_node("Add", ["words", "typed"], ["embedded"]),
        ]
        embedded = "embedded"
    nodes += [
        helper.make_node("Transpose", [embedded], ["keys"], perm=[0, 2, 1]),
        helper.make_node("MatMul", [embedded, "keys"], ["raw_scores"]),
        helper.make_node("Mul", ["raw_scores", "scale"], ["scores"]),
    ]
    scores = "scores"
    if with_mask:
        inputs.append(
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
        )
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "mask_f"], ["masked_out"]),
            helper.make_node("Mul", ["masked_out", "big_negative"], ["bias2d"]),
            helper.make_node("Unsqueeze", ["bias2d", "axis1"], ["bias"]),
            helper.make_node("Add", ["scores", "bias"], ["biased"]),
        ]
        scores = "biased"
    nodes += [
        helper.make_node("Softmax", [scores], ["attention"], axis=-1),
        helper.make_node("MatMul", ["attention", embedded], ["context"]),
        helper.make_node("Add", ["context", embedded], ["tokens"]),
    ]
    output = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["b", "s", hidden])
    if pooled:
        nodes += [
            helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["tokens", "mask3"], ["kept"]),
            helper.make_node("ReduceSum", ["kept", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
            helper.make_node("Div", ["summed", "count"], ["pooled"]),
        ]
        output = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["b", hidden])
    initializers = [
        numpy_helper.from_array(weights["table"], "table"),
        numpy_helper.from_array(weights["types"], "types"),
        numpy_helper.from_array(np.array(1.0 / np.sqrt(hidden), np.float32), "scale"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(-1e4, np.float32), "big_negative"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    graph = helper.make_graph(nodes, "tiny_attention", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_pooled(ids: list[int], types: list[int], *, hidden: int = 8, vocab: int = 64,
                     seed: int = 0) -> np.ndarray:
    """The model's mean-pooled output for one unpadded row, computed in numpy (float64)."""
    weights = attention_weights(hidden, vocab, seed)
    x = weights["table"][ids].astype(np.float64) + weights["types"][types].astype(np.float64)
    scores = x @ x.T / np.sqrt(hidden)
    scores -= scores.max(axis=1, keepdims=True)
    attention = np.exp(scores)
    attention /= attention.sum(axis=1, keepdims=True)
    tokens = attention @ x + x
    return np.asarray(tokens.mean(axis=0))
