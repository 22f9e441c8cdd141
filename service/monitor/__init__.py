"""The monitor: sampled traffic -> decoded tensors -> signals -> detectors -> readings.

`pipeline` joins the intake (queue and worker thread), the per-signal stream state and the
checkpoint codec; readings go to alerting's reading store. Imports detectors/, service.oip,
service.store and alerting's readings; runs on its own worker thread so the relay never
waits.
"""
