"""Rollback hooks: the levers outrider pulls when an alert fires, and their safety rules."""
