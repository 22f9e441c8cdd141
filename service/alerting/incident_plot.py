"""Incident plots: a PNG of a stream's score and threshold around the time an alert fired.

Rendered with matplotlib's object API on the Agg canvas (no pyplot global state), so it is
safe from the monitor's worker thread and needs no display.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure

from service.alerting.history import ReadingHistory, ReadingSeries
from service.alerting.instances import AlertTransition

# Matplotlib's date axis counts days from its epoch; Unix seconds map onto it linearly.
_UNIX_EPOCH_DAYS = float(
    date2num(datetime(1970, 1, 1, tzinfo=timezone.utc))  # type: ignore[no-untyped-call]
)


# Readings further apart than this many times their median spacing (and at least
# MIN_GAP_SECONDS) had no traffic between them: the line breaks there instead of joining
# the two across the silence.
GAP_FACTOR = 5.0
MIN_GAP_SECONDS = 5.0


def _days(timestamps: np.ndarray | float) -> np.ndarray:
    return np.asarray(timestamps, dtype=np.float64) / 86400.0 + _UNIX_EPOCH_DAYS


def break_at_gaps(
    timestamps: np.ndarray, *columns: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The series with a NaN point inserted in every gap, so a line plot breaks there.

    A gap is a spacing above GAP_FACTOR times the median spacing and above MIN_GAP_SECONDS.
    Returns the timestamps and each column (as float) with the NaN points added.
    """
    times = np.asarray(timestamps, dtype=np.float64)
    values = [np.asarray(c, dtype=np.float64) for c in columns]
    if len(times) < 3:
        return times, values
    spacing = np.diff(times)
    limit = max(GAP_FACTOR * float(np.median(spacing)), MIN_GAP_SECONDS)
    gaps = np.flatnonzero(spacing > limit) + 1
    if not len(gaps):
        return times, values
    middles = (times[gaps - 1] + times[gaps]) / 2.0
    return np.insert(times, gaps, middles), [np.insert(v, gaps, np.nan) for v in values]


def alert_plot_title(alert: str, severity: str, model: str, version: str, where: str) -> str:
    """`Drift (page): digits version v1 input/ks` (versions are shown as they are labelled)."""
    return f"{alert} ({severity}): {model} version {version} {where}"


def render_incident_plot(
    path: str | os.PathLike[str],
    series: ReadingSeries,
    *,
    title: str,
    fired_at: float,
    active_since: float | None = None,
    ended_at: float | None = None,
    rule_limit: float | None = None,
) -> Path:
    """Draw `series` (score, threshold, flagged points) with the alert's times marked.

    `active_since` marks when the condition started holding (pending), `fired_at` when the
    alert fired, `ended_at` when it resolved, `rule_limit` a fixed limit from the rule (e.g.
    `score_above`). Stretches without readings (no traffic) are drawn as gaps, not as lines
    joining the readings on either side (`break_at_gaps`); readings kept as gaps by the
    history (no values) break the line too. The PNG is written to a temp file and renamed,
    so a reader never sees a half-written plot. Returns the path.
    """
    target = Path(path)
    probe = series.kind == "probe"
    figure = Figure(figsize=(9.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if len(series):
        stamps, (score, threshold) = break_at_gaps(
            series.timestamp, series.score, series.threshold
        )
        times = _days(stamps)
        axes.plot(times, score, color="tab:blue", linewidth=1.4,
                  label="accuracy" if probe else "score")
        if not np.all(np.isnan(threshold)):
            axes.step(times, threshold, where="post", color="tab:gray", linestyle="--",
                      linewidth=1.2, label="baseline accuracy" if probe else "threshold")
        flagged = series.flagged & ~np.isnan(series.score)
        if flagged.any():
            axes.scatter(_days(series.timestamp[flagged]), series.score[flagged], s=12,
                         color="tab:red", zorder=3,
                         label="regression" if probe else "drift detected")
    else:
        axes.text(0.5, 0.5, "no readings recorded around this incident", ha="center",
                  va="center", transform=axes.transAxes, color="tab:gray")
    if rule_limit is not None:
        axes.axhline(rule_limit, color="tab:purple", linestyle=":", linewidth=1.2,
                     label=f"rule limit {rule_limit:g}")
    if active_since is not None and active_since < fired_at:
        axes.axvline(float(_days(active_since)), color="tab:orange", linestyle=":",
                     linewidth=1.2, label="pending")
    axes.axvline(float(_days(fired_at)), color="tab:red", linewidth=1.5,
                 label="firing")
    if ended_at is not None:
        axes.axvline(float(_days(ended_at)), color="tab:green", linewidth=1.5,
                     label="resolved")
    axes.xaxis_date(timezone.utc)
    axes.xaxis.set_major_formatter(
        DateFormatter("%H:%M:%S", tz=timezone.utc)  # type: ignore[no-untyped-call]
    )
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("accuracy" if probe else "score")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f"{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            figure.savefig(file, format="png")
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def render_alert_plot(
    path: str | os.PathLike[str],
    history: ReadingHistory,
    transition: AlertTransition,
    *,
    before: float = 1800.0,
    after: float = 600.0,
) -> Path:
    """Plot the stream of an alert transition from `before` seconds ahead of the firing.

    On a firing transition the plot ends at the firing; on a resolved one it runs to
    `after` seconds past the resolution (as far as the history reaches), so rendering again
    at resolution gives the on-call the whole incident.
    """
    instance = transition.instance
    fired_at = instance.fired_at if instance.fired_at is not None else transition.at
    ended_at = transition.at if transition.to_state == "resolved" else None
    since = min(instance.active_since, fired_at) - before
    until = (transition.at if ended_at is None else ended_at) + after
    key = instance.key
    where = f"{key.signal}" if key.detector == "" else f"{key.signal}/{key.detector}"
    return render_incident_plot(
        path,
        history.series(key, since=since, until=until),
        title=alert_plot_title(instance.alert, instance.severity, key.model, key.version, where),
        fired_at=fired_at,
        active_since=instance.active_since,
        ended_at=ended_at,
    )
