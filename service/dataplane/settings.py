"""Typed settings for the relay and its passive tap (the `dataplane:` section of the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ListenerTlsSettings(BaseModel):
    """TLS termination on the relay's listener."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path = Field(description="PEM certificate chain the listener presents.")
    key_file: Path = Field(description="PEM private key for cert_file.")
    client_ca_file: Path | None = Field(
        default=None,
        description="If set, clients must present a certificate signed by this CA (mTLS).",
    )


class UpstreamTlsSettings(BaseModel):
    """TLS (optionally mutual) from the relay toward an upstream."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the upstream; None uses system CAs."
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate for mTLS toward the upstream."
    )
    key_file: Path | None = Field(default=None, description="Private key for cert_file.")
    server_name: str | None = Field(
        default=None, description="Name to verify (and send as SNI); defaults to the host."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> UpstreamTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class UpstreamSettings(BaseModel):
    """Where the relay forwards connections."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Upstream model server host.")
    port: int = Field(default=8000, ge=1, le=65535, description="Upstream gRPC port.")
    tls: UpstreamTlsSettings | None = Field(
        default=None, description="TLS toward this upstream; None means plaintext h2c."
    )


class DataplaneSettings(BaseModel):
    """The relay (listener -> upstream) and its passive HTTP/2 + gRPC tap."""

    model_config = ConfigDict(extra="forbid")

    listen_host: str = Field(default="127.0.0.1", description="Address the relay listens on.")
    listen_port: int = Field(
        default=8101,
        ge=0,
        le=65535,
        description="Port the relay listens on (0 picks one). The default clashes with no "
        "model server's default port; a sidecar that takes over the port clients already "
        "use (Triton's 8001) sets it and moves the model server.",
    )
    listener_tls: ListenerTlsSettings | None = Field(
        default=None, description="Terminate TLS on the listener; None means plaintext."
    )
    upstream: UpstreamSettings = Field(
        default_factory=UpstreamSettings, description="The primary upstream model server."
    )
    fallback_upstream: UpstreamSettings | None = Field(
        default=None,
        description="Upstream that new connections go to after the in-band fallback hook fires.",
    )
    connect_timeout_seconds: float = Field(
        default=3.0, gt=0, description="Give up connecting to the upstream after this long."
    )
    max_connections: int = Field(
        default=1024, ge=1, description="Client connections beyond this are closed at once."
    )
    idle_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Close a connection after this long with no bytes in either direction.",
    )
    write_buffer_high_water_bytes: int = Field(
        default=1 << 20,
        ge=16384,
        description="Pause reading a side while the other side has this much unsent data.",
    )
    shutdown_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On stop or a fallback switch, in-flight RPCs get this long to finish; "
        "connections still open then are closed. With the tap off, a connection silent for "
        "this long counts as finished.",
    )
    drain_delay_seconds: float = Field(
        default=0.2,
        ge=0,
        description=(
            "After announcing GOAWAY to a client being drained, wait at least this long "
            "(covers streams the client opened before it saw the GOAWAY) before closing."
        ),
    )
    tap_enabled: bool = Field(
        default=True,
        description="Parse a copy of the traffic for metrics and samples; False relays only.",
    )
    sampling_rate: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Fraction of inference RPCs sampled."
    )
    max_samples_per_second: float = Field(
        default=50.0, gt=0, description="Budget of sampled RPCs per second (token bucket)."
    )
    max_message_bytes: int = Field(
        default=4 << 20,
        ge=1024,
        description="Largest gRPC message kept for a sample, after decompression.",
    )
    queue_size: int = Field(
        default=1000, ge=1, description="Bounded hand-off queue to the monitor; full -> drop."
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio",
        description="Event loop for `outrider serve`; uvloop needs the `fast` extra.",
    )
    sampling_seed: int | None = Field(
        default=None, description="Seed for the sampling decisions (tests); None is random."
    )
