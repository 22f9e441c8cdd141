"""Alerting: readings in, alert events and incidents out.

Every source of readings (the monitor's detectors, the probes; later guard and feedback)
publishes `readings.Reading` values to one `ReadingStore`, the only keeper of the latest
reading per stream and of their recent history. Alert rules read that store, move their
instances through Prometheus-style states, and hand each transition to the incident flow
(incident committed, plot drawn) and on to the hooks as an `events.AlertEvent`.

May import: `service.store` and the shared modules at the top of `service/`; the rooms
that publish readings import this one, never the other way round.
"""
