"""Robustness probes: suites of corrupted and adversarial inputs replayed against the live model.

Suites are built offline (`builder.build_suite`) from clean samples and an ONNX model, and
replayed on a schedule (`scheduler.ProbeScheduler`) over gRPC with the probe header, so the
model in production is checked for brittleness right after each new version rolls out.
"""
