"""Admin HTTP: /metrics, /healthz, /readyz, incidents and inbound webhooks (aiohttp)."""
