"""FiringAlertBook: firing in, resolved out, expired alerts dropped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from service.alerting.alert_book import CombinedAlertView, FiringAlertBook
from service.alerting.events import AlertEvent

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)


def event(fingerprint: str, status: str = "firing", ends_at: datetime | None = None
          ) -> AlertEvent:
    return AlertEvent(name="InputDrift", severity="critical", status=status,  # type: ignore[arg-type]
                      fingerprint=fingerprint, starts_at=T0, ends_at=ends_at)


def test_firing_resolved_and_expiry() -> None:
    clock = [T0]
    book = FiringAlertBook(now=lambda: clock[0])
    book.observe(event("a"))
    book.observe(event("b", ends_at=T0 + timedelta(minutes=5)))
    book.observe(event("a"))  # a repeat replaces, never duplicates
    assert [e.fingerprint for e in book.firing()] == ["a", "b"]

    book.observe(event("a", status="resolved"))
    assert [e.fingerprint for e in book.firing()] == ["b"]

    clock[0] = T0 + timedelta(minutes=5)
    assert book.firing() == []


def test_combined_view_concatenates() -> None:
    first, second = FiringAlertBook(), FiringAlertBook()
    first.observe(event("a"))
    second.observe(event("b"))
    assert [e.fingerprint for e in CombinedAlertView(first, second).firing()] == ["a", "b"]
