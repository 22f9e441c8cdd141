"""Sampling decisions, label folding and the cheap protobuf field reader."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.dataplane.metrics import code_label
from service.dataplane.observation import BoundedQueueSink, RpcObservation
from service.dataplane.protobuf_fields import model_of_request, version_of_response
from service.dataplane.sampling import Sampler
from service.dataplane.settings import DataplaneSettings, UpstreamTlsSettings
from service.label_bounds import OTHER, BoundedLabel
from service.oip import open_inference_pb2 as pb


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sampler_budget_caps_samples_per_second() -> None:
    clock = FakeClock()
    sampler = Sampler(1.0, 5.0, seed=0, clock=clock)
    assert [sampler.decide() for _ in range(8)] == [True] * 5 + [False] * 3
    clock.now = 0.4  # two tokens back
    assert [sampler.decide() for _ in range(3)] == [True, True, False]


def test_sampler_rate_is_seeded() -> None:
    a = Sampler(0.25, 1e9, seed=42)
    b = Sampler(0.25, 1e9, seed=42)
    first = [a.decide() for _ in range(1000)]
    assert first == [b.decide() for _ in range(1000)]
    assert sum(first) == 238
    assert not any(Sampler(0.0, 10.0, seed=1).decide() for _ in range(100))


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate must be in"):
        Sampler(1.5, 1.0)
    with pytest.raises(ValueError, match="max_per_second must be > 0"):
        Sampler(0.5, 0.0)


def test_bounded_label_folds_newcomers_into_other() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_code_labels() -> None:
    assert code_label(0, "") == "OK"
    assert code_label(5, "x") == "NOT_FOUND"
    assert code_label(99, "") == OTHER
    assert code_label(None, "RST_STREAM from client, error code 8") == "RESET"
    assert code_label(None, "connection closed") == "NO_STATUS"


def test_model_and_version_fields() -> None:
    request = pb.ModelInferRequest(
        model_name="resnet", model_version="7", id="x"
    ).SerializeToString()
    assert model_of_request(request) == ("resnet", "7")
    assert model_of_request(request[:5]) == ("", "")  # cut inside the name
    assert model_of_request(b"\xff\xff\xff") == ("", "")
    response = pb.ModelInferResponse(model_name="resnet", model_version="8").SerializeToString()
    assert version_of_response(response, stream=False) == "8"
    assert version_of_response(response, stream=True) == "8"  # MLServer streams plain responses
    wrapped = pb.ModelStreamInferResponse(
        infer_response=pb.ModelInferResponse(model_name="resnet", model_version="9")
    ).SerializeToString()
    assert version_of_response(wrapped, stream=True) == "9"
    error = pb.ModelStreamInferResponse(error_message="boom").SerializeToString()
    assert version_of_response(error, stream=True) == ""


async def test_bounded_queue_sink_drops_when_full() -> None:
    sink = BoundedQueueSink(1)
    obs = RpcObservation(
        1, 1, "/m", "a", 0.0, 1.0, 5, 5, 0, "", False, True, (b"",), (b"",), "m", ""
    )
    assert sink.offer(obs) is True
    assert sink.offer(obs) is False
    assert sink.queue.qsize() == 1


def test_settings_refuse_unknown_keys_and_half_mtls() -> None:
    with pytest.raises(ValidationError, match="extra_forbidden"):
        DataplaneSettings.model_validate({"listen_prot": 1})
    with pytest.raises(ValidationError, match="cert_file and key_file must be given together"):
        UpstreamTlsSettings.model_validate({"cert_file": "c.pem"})
    assert DataplaneSettings().upstream.port == 8000
    assert all(f.description for f in DataplaneSettings.model_fields.values())


def test_long_version_takes_the_general_path() -> None:
    request = pb.ModelInferRequest(model_name="m", model_version="v" * 200, id="i")
    assert model_of_request(request.SerializeToString()) == ("m", "v" * 200)
    only_id = pb.ModelInferRequest(model_name="m", id="i").SerializeToString()
    assert model_of_request(only_id) == ("m", "")


def test_loop_factory() -> None:
    import asyncio

    from service.dataplane.event_loop import loop_factory

    assert loop_factory("asyncio") is asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        assert type(runner.get_loop()).__module__.startswith("uvloop")
    with pytest.raises(ValueError, match="event_loop must be one of"):
        loop_factory("trio")  # type: ignore[arg-type]
