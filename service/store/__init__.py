"""Durable state: the state directory, SQLite incidents, checkpoints and retention."""
