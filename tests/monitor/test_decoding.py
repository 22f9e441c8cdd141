"""Decoding observations: unary and streamed calls, version fallback, counted failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from service.label_bounds import VersionLabels
from service.monitor.decoding import DecodeError, decode_observation, inference_method
from service.monitor.model_versions import VersionResolver, latest_version
from service.oip import open_inference_pb2 as pb


def test_unary_call_tensors_version_and_id(make_observation: Callable[..., Any]) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float64)
    obs = make_observation(inputs={"x": x}, outputs={"y": y}, version="4", request_id="abc")
    (call,) = decode_observation(obs, VersionResolver())
    assert (call.model, call.version, call.request_id) == ("demo", "4", "abc")
    np.testing.assert_array_equal(call.inputs["x"], x)
    np.testing.assert_array_equal(call.outputs["y"], y)


def test_stream_response_error_is_a_counted_reason(make_observation: Callable[..., Any]) -> None:
    obs = make_observation(
        inputs={"x": np.zeros((1, 2), dtype=np.float32)},
        stream=True,
        raw_response=pb.ModelStreamInferResponse(error_message="boom").SerializeToString(),
    )
    with pytest.raises(DecodeError) as info:
        decode_observation(obs, VersionResolver())
    assert info.value.reason == "stream_error"


def test_bad_protobuf_and_bad_tensor_reasons(make_observation: Callable[..., Any]) -> None:
    garbage = make_observation(raw_response=b"\x0a\xff\xff\xff\xff")
    with pytest.raises(DecodeError) as info:
        decode_observation(garbage, VersionResolver())
    assert info.value.reason == "bad_protobuf"
    request = pb.ModelInferRequest(model_name="demo")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    request.raw_input_contents.append(b"\x00" * 3)  # 3 bytes for 4 floats
    bad = make_observation(raw_request=request.SerializeToString())
    with pytest.raises(DecodeError) as info:
        decode_observation(bad, VersionResolver())
    assert info.value.reason == "bad_tensor"
    assert "'x'" in info.value.detail


def test_request_without_response_still_yields_inputs(
    make_observation: Callable[..., Any],
) -> None:
    obs = make_observation(inputs={"x": np.ones((1, 2), dtype=np.float32)}, request_version="2")
    obs = replace(obs, response_messages=())
    (call,) = decode_observation(obs, VersionResolver())
    assert call.version == "2" and call.outputs == {}


def test_non_inference_methods_are_ignored(make_observation: Callable[..., Any]) -> None:
    obs = replace(make_observation(), method="/inference.GRPCInferenceService/ModelMetadata")
    assert decode_observation(obs, VersionResolver()) == []
    assert inference_method("/x.y/ModelInfer") is None
    assert inference_method("/inference.GRPCInferenceService/ModelStreamInfer") == (
        "ModelStreamInfer"
    )


def test_resolver_asks_once_and_remembers_failures() -> None:
    calls: list[str] = []

    def failing(model: str) -> str | None:
        calls.append(model)
        raise ConnectionError("down")

    resolver = VersionResolver(failing)
    assert [resolver.resolve("m"), resolver.resolve("m")] == ["unknown", "unknown"]
    assert calls == ["m"]
    assert latest_version(["1", "10", "9"]) == "10"
    assert latest_version(["a", "b"]) == "b"
    assert latest_version([]) is None


def test_resolver_asks_again_after_its_refresh_time() -> None:
    now = [0.0]
    answers = iter([None, "1", "2"])
    resolver = VersionResolver(
        lambda model: next(answers), refresh_seconds=300, retry_seconds=30, clock=lambda: now[0]
    )
    assert resolver.resolve("m") == "unknown"
    now[0] = 29.0
    assert resolver.resolve("m") == "unknown"  # a failure is retried, but not every call
    now[0] = 31.0
    assert resolver.resolve("m") == "1"
    now[0] = 330.0
    assert resolver.resolve("m") == "1"
    now[0] = 332.0
    assert resolver.resolve("m") == "2"  # a new version rolled out upstream


def test_version_labels_fold_and_round_trip() -> None:
    labels = VersionLabels(2)
    assert [labels.label("m", v) for v in ("1", "2", "3", "1")] == ["1", "2", "other", "1"]
    again = VersionLabels(2)
    again.load_state_dict(labels.state_dict())
    assert again.label("m", "3") == "other"


def test_closing_stream_observation_without_messages_is_not_an_error(
    make_observation: Callable[..., Any],
) -> None:
    obs = replace(make_observation(stream=True), request_messages=(), response_messages=())
    assert decode_observation(obs, VersionResolver()) == []


def test_stream_messages_pair_in_order(make_observation: Callable[..., Any]) -> None:
    a = make_observation(inputs={"x": np.zeros((1, 1), np.float32)}, request_id="a", stream=True)
    b = make_observation(inputs={"x": np.ones((1, 1), np.float32)}, request_id="b", stream=True)
    obs = replace(a, request_messages=a.request_messages + b.request_messages,
                  response_messages=a.response_messages)
    calls = decode_observation(obs, VersionResolver())
    assert [(c.request_id, c.inputs["x"].tolist(), sorted(c.outputs)) for c in calls] == [
        ("a", [[0.0]], []), ("b", [[1.0]], [])
    ]
