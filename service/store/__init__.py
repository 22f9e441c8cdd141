"""Durable state: the state directory, SQLite incidents and atomic detector checkpoints."""
