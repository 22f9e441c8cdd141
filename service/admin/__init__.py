"""Admin HTTP (aiohttp): /metrics, /healthz, /readyz, incidents, inbound Alertmanager,
Flagger and Argo Rollouts requests (their transport-free cores live here too)."""
