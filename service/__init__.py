"""outrider, the sidecar application.

Rooms (DESIGN.md; tests/test_import_rules.py enforces who may import whom): `dataplane`
relays bytes and taps a copy; `monitor` turns sampled traffic into signals and detector
readings; `probes` replays robustness suites against the live model and publishes their
readings; `alerting` keeps the latest readings, runs the alert rules and turns transitions
into incidents and alert events; `hooks` pulls rollback levers; `admin` serves metrics,
health, incidents and inbound alerts; `store` keeps incidents, checkpoints and the state
directory; `oip` holds the protocol stubs and tensor codec; `modelserver` is the bundled
OIP server of the demo and the tests. Every room may use `label_bounds` (the one label
policy) and `metric_families` (the one list of metric families). `app` is the
composition root and `cli` the command line.
"""
