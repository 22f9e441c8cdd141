"""Webhook hook: POSTs the alert as signed JSON, retrying transient failures with backoff."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.secret_source import SecretUnavailableError, read_secret
from service.hooks.settings import WebhookHookSettings

SIGNATURE_HEADER = "X-Outrider-Signature"
DELIVERY_HEADER = "X-Outrider-Delivery"
_RESPONSE_EXCERPT = 512


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Outrider-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_body(hook: str, event: AlertEvent, delivery: str) -> bytes:
    """The JSON document POSTed for ``event`` (compact, keys sorted so signatures are stable)."""
    document: dict[str, Any] = {
        "hook": hook,
        "delivery": delivery,
        "status": event.status,
        "alert": event.to_json(),
        "incident": {"id": event.incident_id, "url": event.incident_url},
        "evidence": dict(event.evidence),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


def delivery_id(hook: str, event: AlertEvent) -> str:
    """Stable id of one delivery, the same across retries, so receivers can deduplicate."""
    key = f"{hook}\n{event.incident_key}\n{event.status}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


class WebhookHook:
    """POST JSON (alert, labels, incident id and link, evidence) to a configured URL.

    Retries 5xx answers, timeouts and connection errors with exponential backoff and equal
    jitter (half the backoff fixed, half random); a 4xx answer is final.
    """

    def __init__(
        self,
        settings: WebhookHookSettings,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep

    @property
    def name(self) -> str:
        """The configured hook name."""
        return self.settings.name

    def backoff_seconds(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0-based): in [base/2, base], base doubling."""
        base = min(
            self.settings.backoff_max_seconds,
            self.settings.backoff_initial_seconds * (2.0**retry),
        )
        return base / 2.0 + self._rng.uniform(0.0, base / 2.0)

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Deliver the firing alert."""
        return await self._deliver(event, dry_run=dry_run)

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Deliver the resolved alert when ``send_resolved`` is on."""
        if not self.settings.send_resolved:
            return None
        return await self._deliver(event, dry_run=dry_run)

    def _headers(self, body: bytes, delivery: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery}
        if self.settings.signing_secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(read_secret(self.settings.signing_secret), body)
        if self.settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {read_secret(self.settings.bearer_token)}"
        return headers

    async def _deliver(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        url = self.settings.url
        action = f"POST {url} ({event.status} {event.name})"
        delivery = delivery_id(self.name, event)
        body = webhook_body(self.name, event, delivery)
        try:
            headers = self._headers(body, delivery)
        except SecretUnavailableError as exc:
            return HookResult("failed", action, {"url": url, "error": str(exc)})
        if dry_run:
            return HookResult(
                "dry_run",
                action,
                {"url": url, "delivery": delivery, "body_bytes": len(body),
                 "headers": sorted(headers)},
            )
        attempts: list[dict[str, Any]] = []
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(self.settings.max_retries + 1):
                retryable, record = await self._attempt(session, url, body, headers)
                record["attempt"] = attempt + 1
                attempts.append(record)
                status = record.get("status")
                if isinstance(status, int) and 200 <= status < 300:
                    return HookResult(
                        "success", action, {"url": url, "delivery": delivery, "attempts": attempts}
                    )
                if not retryable or attempt == self.settings.max_retries:
                    break
                delay = self.backoff_seconds(attempt)
                record["backoff_seconds"] = round(delay, 6)
                await self._sleep(delay)
        return HookResult(
            "failed", action, {"url": url, "delivery": delivery, "attempts": attempts}
        )

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[bool, dict[str, Any]]:
        """One POST: (whether a retry may help, what happened)."""
        try:
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                text = await response.text(errors="replace")
                record: dict[str, Any] = {
                    "status": response.status,
                    "response": text[:_RESPONSE_EXCERPT],
                }
                return response.status >= 500, record
        except asyncio.TimeoutError:
            return True, {"error": "timeout"}
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            return True, {"error": f"{type(exc).__name__}: {exc}"}
        except aiohttp.ClientError as exc:
            # Bad URL and the like: retrying cannot help.
            return False, {"error": f"{type(exc).__name__}: {exc}"}
