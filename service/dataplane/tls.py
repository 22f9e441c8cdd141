"""TLS contexts for the relay's listener and for its connections to upstreams."""

from __future__ import annotations

import ssl

from service.dataplane.settings import ListenerTlsSettings, UpstreamTlsSettings


def listener_ssl_context(settings: ListenerTlsSettings) -> ssl.SSLContext:
    """Server-side context terminating TLS for clients (ALPN h2, optional client certs)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    ctx.set_alpn_protocols(["h2"])
    if settings.client_ca_file is not None:
        ctx.load_verify_locations(str(settings.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def upstream_ssl_context(settings: UpstreamTlsSettings) -> ssl.SSLContext:
    """Client-side context toward an upstream: verified, ALPN h2, optional client cert."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.ca_file) if settings.ca_file is not None else None,
    )
    if settings.cert_file is not None and settings.key_file is not None:
        ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    ctx.set_alpn_protocols(["h2"])
    return ctx
