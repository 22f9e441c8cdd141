"""TLS termination on the listener and TLS/mTLS toward the upstream."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from service.dataplane.observation import ListSink
from service.dataplane.settings import ListenerTlsSettings, UpstreamSettings, UpstreamTlsSettings
from tests.dataplane.conftest import SERVICE, EchoUpstream, RelayFactory, identity, unary

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.pem",
                 cwd=d)  # fmt: skip
    return d


async def test_listener_terminates_tls_and_the_tap_reads_cleartext(
    pki: Path, echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    sink = ListSink()
    relay = await make_relay(
        echo_upstream.port,
        sink=sink,
        listener_tls=ListenerTlsSettings(cert_file=pki / "server.pem", key_file=pki / "server.key"),
    )
    creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with grpc.aio.secure_channel(f"127.0.0.1:{relay.port}", creds, options) as channel:
        assert await unary(channel)(b"\x0a\x03tls") == b"\x0a\x03tls"
    assert [(o.model_name, o.grpc_status) for o in sink.observations] == [("tls", 0)]


async def test_upstream_mtls(pki: Path, make_relay: RelayFactory) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(_secure_echo, identity, identity)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        tls = UpstreamTlsSettings(
            ca_file=pki / "ca.pem", cert_file=pki / "client.pem", key_file=pki / "client.key",
            server_name="localhost",
        )  # fmt: skip
        relay = await make_relay(port, upstream=UpstreamSettings(port=port, tls=tls))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{relay.port}") as channel:
            assert await unary(channel)(b"hello") == b"secure:hello"
        # without a client certificate the upstream refuses: the client sees UNAVAILABLE
        no_cert = UpstreamTlsSettings(ca_file=pki / "ca.pem", server_name="localhost")
        refused = await make_relay(port, upstream=UpstreamSettings(port=port, tls=no_cert))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{refused.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unary(channel)(b"hello", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def _secure_echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"secure:" + request
