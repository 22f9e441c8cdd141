"""outrider, the sidecar application.

Rooms (see DESIGN.md): `dataplane` relays bytes and taps a copy; `oip` holds the protocol
stubs and tensor codec; `monitor` turns sampled traffic into signals, detector readings and
alerts; `probes` replays robustness suites against the live model; `hooks` pulls rollback
levers; `admin` serves metrics, health, incidents and inbound webhooks; `store` keeps
incidents, checkpoints and references in the state directory; `modelserver` is the bundled
OIP server used by the demo and the tests. `app` wires them together and `cli` parses the
command line.
"""
