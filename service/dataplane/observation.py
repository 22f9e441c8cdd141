"""What the data plane hands to the monitor: one record per observed gRPC call.

For unary RPCs one observation is emitted when the call ends. For `ModelStreamInfer`
the tap emits one observation per response message, paired in order with the oldest
request message not yet paired (`grpc_status` is None on those, the stream is still
open), and a closing observation when the stream ends that carries the status and any
request messages left unpaired. Sizes on each observation cover only the messages it
carries (the closing one: whatever was not yet attributed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RpcObservation:
    """One gRPC call (or one streamed response) as seen on the wire by the passive tap."""

    connection_id: int
    stream_id: int
    method: str
    authority: str
    start_time: float
    end_time: float
    request_bytes: int
    response_bytes: int
    grpc_status: int | None
    grpc_message: str
    probe: bool
    sampled: bool
    request_messages: tuple[bytes, ...]
    response_messages: tuple[bytes, ...]
    model_name: str
    model_version: str


class ObservationSink(Protocol):
    """Receives sampled observations from the relay; must never block."""

    def offer(self, obs: RpcObservation) -> bool:
        """Takes the observation if there is room; False means it was dropped."""
        ...


class BoundedQueueSink:
    """An `ObservationSink` over a bounded asyncio queue, for tests and simple consumers.

    Must be used from the event loop thread that runs the relay.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be > 0, got {maxsize}")
        self.maxsize = maxsize
        self.queue: asyncio.Queue[RpcObservation] = asyncio.Queue(maxsize)

    def offer(self, obs: RpcObservation) -> bool:
        try:
            self.queue.put_nowait(obs)
        except asyncio.QueueFull:
            return False
        return True


class ListSink:
    """An unbounded `ObservationSink` that keeps everything in a list (tests only)."""

    def __init__(self) -> None:
        self.observations: list[RpcObservation] = []

    def offer(self, obs: RpcObservation) -> bool:
        self.observations.append(obs)
        return True
