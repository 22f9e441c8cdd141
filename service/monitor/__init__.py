"""The monitor: sampled traffic -> decoded tensors -> signals -> detectors -> readings -> alerts.

Imports detectors/ and service.oip; runs on its own worker thread so the relay never waits.
"""
