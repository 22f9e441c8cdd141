"""Runs `outrider serve` as a real subprocess for end-to-end tests, and reads its metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.peers import free_port


class OutriderProcess:
    """`outrider serve --config FILE` in a subprocess on free loopback ports."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.relay_port = free_port()
        self.admin_port = free_port()
        config = {**config}
        config.setdefault("dataplane", {})
        config["dataplane"] = {**config["dataplane"], "listen_port": self.relay_port}
        config["admin"] = {"host": "127.0.0.1", "port": self.admin_port}
        config.setdefault("logging", {"level": "info", "format": "json"})
        self.config_path = workdir / "outrider.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "outrider.log"
        self.state_dir = Path(config.get("state_dir", "outrider-state"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"outrider exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        # Not ready: do not leave it running behind the failed test.
        self.process.kill()
        self.process.wait()
        raise TimeoutError(
            f"outrider not ready in {timeout} s: {self.log_path.read_text()[-3000:]}"
        )

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.relay_port}"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"{self.admin_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float | None:
        wanted = set(labels.items())
        for (sample, sample_labels), value in self.metrics().items():
            if sample == name and wanted <= set(sample_labels):
                return value
        return None

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill_hard(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown checkpoint, no cleanup
        self.process.wait()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not seen within {timeout} s (last: {last!r})")
