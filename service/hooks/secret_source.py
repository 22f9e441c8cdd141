"""Reads a secret (token, signing key) from the environment variable or file a config names."""

from __future__ import annotations

import os

from service.hooks.settings import SecretSource


class SecretUnavailableError(RuntimeError):
    """The configured secret is missing or empty."""


def read_secret(source: SecretSource) -> str:
    """Return the secret's value, read now (files are re-read so rotation is picked up)."""
    if source.env is not None:
        value = os.environ.get(source.env, "")
        where = f"environment variable {source.env}"
    else:
        assert source.file is not None  # guaranteed by SecretSource's validator
        where = f"file {source.file}"
        try:
            value = source.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretUnavailableError(f"cannot read secret from {where}: {exc}") from exc
    value = value.strip()
    if not value:
        raise SecretUnavailableError(f"secret from {where} is empty")
    return value
