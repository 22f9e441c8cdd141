from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.probes.builder import BuildOptions, build_suite
from service.probes.signature import ModelSignature, SuiteMismatchError, TensorSpec
from service.probes.suite import SuiteFormatError, load_suite, save_suite

MODEL = ModelSignature(
    inputs=(TensorSpec("pixels", "FP32", (-1, 64)),),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 10)),),
)


@pytest.fixture(scope="module")
def square_suite_path(
    demo_model_path: Path,
    digits_sample: tuple[np.ndarray, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    x, y = digits_sample
    out = tmp_path_factory.mktemp("suites") / "sq.npz"
    build_suite(
        demo_model_path,
        x[:12],
        y[:12],
        name="sq",
        kind="square",
        options=BuildOptions(eps=4.0, max_queries=100, seed=1),
        out=out,
    )
    return out


def test_suite_round_trips_without_pickle(square_suite_path: Path) -> None:
    suite = load_suite(square_suite_path)
    with np.load(square_suite_path, allow_pickle=False) as data:
        assert sorted(data.files) == [
            "inputs",
            "labels",
            "metadata",
            "queries",
            "source_index",
            "variants",
        ]
        meta = json.loads(str(data["metadata"]))
    assert meta["kind"] == "square" and meta["name"] == "sq"
    assert meta["signature"] == MODEL.to_json() | {"outputs": meta["signature"]["outputs"]}
    assert meta["generator"]["attack"]["eps"] == 4.0
    assert meta["generator"]["attack"]["max_queries"] == 100
    assert meta["created_at"] > 0
    assert len(suite) == 24 and suite.variant_names() == ["clean", "square_linf"]
    assert suite.inputs.dtype == np.float32
    adv = suite.inputs[12:].astype(np.float64)
    assert np.abs(adv - suite.inputs[:12]).max() <= 4.0 + 1e-5
    assert suite.queries[:12].tolist() == [-1] * 12
    assert suite.queries[12:].max() <= 100
    again = save_suite(suite, square_suite_path.with_name("copy.npz"))
    assert load_suite(again).digest() == suite.digest()


def test_matching_signature_loads(square_suite_path: Path) -> None:
    suite = load_suite(square_suite_path, model="demo", signature=MODEL)
    assert suite.name == "sq"


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (
            ModelSignature((TensorSpec("image", "FP32", (-1, 64)),), MODEL.outputs),
            "suite 'sq' does not match model 'demo': tensor 'pixels': input not in the model "
            "(model inputs: ['image'])",
        ),
        (
            ModelSignature((TensorSpec("pixels", "FP64", (-1, 64)),), MODEL.outputs),
            "suite 'sq' does not match model 'demo': tensor 'pixels': datatype FP32 in the "
            "suite, FP64 in the model",
        ),
        (
            ModelSignature((TensorSpec("pixels", "FP32", (-1, 784)),), MODEL.outputs),
            "suite 'sq' does not match model 'demo': tensor 'pixels': shape [-1, 64] in the "
            "suite, [-1, 784] in the model",
        ),
        (
            ModelSignature(MODEL.inputs, (TensorSpec("logits", "FP32", (-1, 10)),)),
            "suite 'sq' does not match model 'demo': tensor 'probabilities': output not in the "
            "model (model outputs: ['logits'])",
        ),
    ],
)
def test_mismatched_suite_is_refused_naming_tensor_and_mismatch(
    square_suite_path: Path, signature: ModelSignature, message: str
) -> None:
    with pytest.raises(SuiteMismatchError) as caught:
        load_suite(square_suite_path, model="demo", signature=signature)
    assert str(caught.value) == message


def test_not_a_suite_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, inputs=np.zeros((2, 3)))
    with pytest.raises(SuiteFormatError, match=r"not a probe suite, missing arrays \['labels'"):
        load_suite(path)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(SuiteFormatError, match="not a readable probe suite"):
        load_suite(tmp_path / "junk.npz")


def test_noise_hopskipjump_and_image_corruption_suites(
    demo_model_path: Path, digits_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits_sample
    noise = build_suite(
        demo_model_path,
        x[:5],
        y[:5],
        name="n",
        kind="noise",
        options=BuildOptions(sigma=2.0, noise_copies=50),
    )
    assert len(noise) == 5 + 250
    assert noise.variant_names() == ["clean", "noise_sigma=2"]
    assert noise.source_index[5:].tolist() == np.repeat(np.arange(5), 50).tolist()
    assert noise.summary["median_radius"] > 0
    hsj = build_suite(
        demo_model_path,
        x[:5],
        y[:5],
        name="h",
        kind="hopskipjump",
        options=BuildOptions(eps=16.0, max_queries=300),
    )
    assert np.linalg.norm(hsj.inputs[5:] - hsj.inputs[:5], axis=1).max() <= 16.0 + 1e-3
    images = build_suite(
        demo_model_path,
        x[:5],
        y[:5],
        name="t",
        kind="corruptions",
        options=BuildOptions(image_shape=None, value_range=(0.0, 16.0)),
    )
    # The demo model names its image shape, so the image corruptions are chosen.
    assert images.generator["modality"] == "image"
    assert len(images) == 5 * 46
