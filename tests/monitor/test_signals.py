"""Signals: tensors to rows with exact values, typed errors, and the ONNX embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.monitor.decoding import DecodedCall
from service.monitor.embedder import EmbedderError, OnnxEmbedder
from service.monitor.settings import EmbedderSettings, SignalSettings, TransformSettings
from service.monitor.signals import SignalError, SignalExtractor, transform_rows


def _signal(**kw: object) -> SignalSettings:
    base: dict[str, object] = {
        "name": "s",
        "source": {"output": "logits"},
        "detectors": [{"type": "ks", "window": 10}],
    }
    base.update(kw)
    return SignalSettings.model_validate(base)


def test_flatten_columns_softmax_exact() -> None:
    t = np.array([[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]], dtype=np.float32)
    rows = transform_rows(t, TransformSettings(columns=(3, 0)))
    np.testing.assert_array_equal(rows, [[3.0, 0.0], [7.0, 4.0]])
    assert rows.dtype == np.float64
    soft = transform_rows(np.array([[0.0, np.log(3.0)]]), TransformSettings(softmax=True))
    np.testing.assert_allclose(soft, [[0.25, 0.75]], rtol=0, atol=1e-15)
    reshaped = transform_rows(np.arange(6), TransformSettings(reshape=(-1, 3)))
    np.testing.assert_array_equal(reshaped, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(transform_rows(np.array([1, 2]), TransformSettings()),
                                  [[1.0], [2.0]])


@pytest.mark.parametrize(
    ("tensor", "transform", "reason"),
    [
        (np.array([b"a"], dtype=object), TransformSettings(), "wrong_dtype"),
        (np.float32(1.0).reshape(()), TransformSettings(), "wrong_shape"),
        (np.zeros((2, 3)), TransformSettings(columns=(3,)), "wrong_shape"),
        (np.zeros(5), TransformSettings(reshape=(-1, 2)), "wrong_shape"),
        (np.array([[1.0, np.inf]]), TransformSettings(), "non_finite"),
    ],
)
def test_bad_tensors_raise_their_reason(
    tensor: np.ndarray, transform: TransformSettings, reason: str
) -> None:
    with pytest.raises(SignalError) as info:
        transform_rows(tensor, transform)
    assert info.value.reason == reason


def test_extractor_checks_presence_and_dims() -> None:
    extractor = SignalExtractor("demo", _signal(), dims=2)
    call = DecodedCall("demo", "1", "r", inputs={}, outputs={"logits": np.zeros((1, 3))})
    with pytest.raises(SignalError, match="rows have 3 dims, the signal has 2"):
        extractor.rows(call)
    with pytest.raises(SignalError, match="response output 'logits' not found; present: x"):
        extractor.rows(DecodedCall("demo", "1", "r", inputs={"logits": np.zeros((1, 2))},
                                   outputs={"x": np.zeros(1)}))


def _linear_onnx(path: Path, weights: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["emb"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_embedder_batches_and_matches_matmul(tmp_path: Path) -> None:
    w = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    path = _linear_onnx(tmp_path / "e.onnx", w)
    embedder = OnnxEmbedder(EmbedderSettings(path=path, input="x", batch_size=2))
    assert embedder.dims == 2
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(embedder.embed(x), x.astype(np.float64) @ w)
    signal = _signal(source={"embedder": {"path": str(path), "input": "x"}})
    extractor = SignalExtractor("demo", signal, embedder=embedder)
    rows = extractor.rows(DecodedCall("demo", "1", "", inputs={"x": x}))
    np.testing.assert_array_equal(rows, x @ w)
    with pytest.raises(SignalError) as info:
        extractor.rows(DecodedCall("demo", "1", "", inputs={"x": np.zeros((1, 4), np.float32)}))
    assert info.value.reason == "embedder_error"


def test_embedder_load_errors_are_typed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EmbedderError, match="cannot load embedder"):
        OnnxEmbedder(EmbedderSettings(path=bad, input="x"))
    path = _linear_onnx(tmp_path / "e.onnx", np.eye(2))
    with pytest.raises(EmbedderError, match="has no output 'nope'; outputs: emb"):
        OnnxEmbedder(EmbedderSettings(path=path, input="x", output="nope"))


def test_text_embedder_without_tokenizers_says_what_to_install(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tokenizers is installed")
    path = _linear_onnx(tmp_path / "e.onnx", np.eye(2))
    (tmp_path / "tokenizer.json").write_text("{}")
    settings = EmbedderSettings(path=path, input="text", tokenizer=tmp_path / "tokenizer.json")
    with pytest.raises(EmbedderError, match="pip install tokenizers"):
        OnnxEmbedder(settings)
