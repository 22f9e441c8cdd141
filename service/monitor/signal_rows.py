"""A signal's rows from a batch of decoded calls: extraction, rate limit and batched embedding.

Bad calls are counted (by reason) and skipped, never fed: a detector sees only rows of the
signal's shape. Rows past the signal's rate limit are shed and counted. Embedder signals
are embedded in one batched run, or call by call when the batch holds a bad call.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from service.monitor.decoding import DecodedCall
from service.monitor.monitored_signal import MonitoredSignal
from service.monitor.signals import SignalError, SignalExtractor


def payload_preview(extractor: SignalExtractor, call: DecodedCall, limit: int = 8) -> str:
    """The first values of the offending tensor, for logs when `log_payloads` allows it."""
    try:
        tensor = extractor.tensor_of(call)
    except SignalError:
        return "absent"
    flat = tensor.reshape(-1)[:limit]
    return f"shape {list(tensor.shape)} {tensor.dtype} first {flat.tolist()!r}"


def rows_of(
    signal: MonitoredSignal, calls: list[DecodedCall], mono: float
) -> tuple[np.ndarray | None, list[str]]:
    """The signal's rows from calls, rate-limited, and the calls' request ids."""
    counters = signal.counters
    extractor = signal.extractor
    parts: list[np.ndarray] = []
    ids: list[str] = []
    for call in calls:
        try:
            rows = extractor.tensor_of(call) if extractor.embedder is not None else (
                extractor.rows(call)
            )
        except SignalError as exc:
            detail = exc.detail
            if signal.monitor.log_payloads:
                detail += f"; payload: {payload_preview(extractor, call)}"
            counters.signal_errors.inc((signal.model, signal.name, exc.reason), detail=detail)
            continue
        if extractor.embedder is None and parts and rows.shape[1] != parts[0].shape[1]:
            counters.signal_errors.inc(
                (signal.model, signal.name, "wrong_shape"),
                detail=f"rows have {rows.shape[1]} dims, earlier rows {parts[0].shape[1]}",
            )
            continue
        parts.append(rows)
        ids.append(call.request_id)
    if not parts:
        return None, ids
    total = sum(p.shape[0] for p in parts)
    allowed = signal.bucket.take(total, mono) if signal.bucket is not None else total
    if allowed < total:
        counters.shed_samples.inc(
            (signal.model, signal.name), float(total - allowed), detail="rate limit"
        )
    if allowed == 0:
        return None, ids
    if extractor.embedder is not None:
        return embed(signal, parts, allowed), ids
    return np.concatenate(parts, axis=0)[:allowed], ids


def embed(signal: MonitoredSignal, tensors: list[np.ndarray], allowed: int) -> np.ndarray | None:
    """Embeds the first `allowed` rows of the calls' tensors in one batched run."""
    # One run needs one row shape: keep the most common one, count the others.
    shapes = Counter((t.shape[1:], t.dtype.str) for t in tensors)
    (shape, dtype), _ = shapes.most_common(1)[0]
    same = [t for t in tensors if t.shape[1:] == shape and t.dtype.str == dtype]
    if len(same) < len(tensors):
        signal.counters.signal_errors.inc(
            (signal.model, signal.name, "wrong_shape"),
            float(len(tensors) - len(same)),
            detail="embedder inputs of differing shapes in one batch",
        )
    stacked = np.concatenate(same, axis=0)[:allowed]
    try:
        return signal.extractor.rows_from_tensor(stacked)
    except SignalError:
        # One bad call (say, an input the embedder turns into NaN) must not cost the
        # others in its batch: embed call by call, counting and skipping only the bad.
        return embed_each(signal, same, allowed)


def embed_each(
    signal: MonitoredSignal, tensors: list[np.ndarray], allowed: int
) -> np.ndarray | None:
    """Embeds call by call, counting and skipping the calls the embedder refuses."""
    kept: list[np.ndarray] = []
    for tensor in tensors:
        if allowed <= 0:
            break
        tensor = tensor[:allowed]
        allowed -= tensor.shape[0]
        try:
            kept.append(signal.extractor.rows_from_tensor(tensor))
        except SignalError as exc:
            signal.counters.signal_errors.inc(
                (signal.model, signal.name, exc.reason), detail=exc.detail
            )
    return np.concatenate(kept, axis=0) if kept else None
