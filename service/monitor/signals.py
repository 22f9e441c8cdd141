"""Signals: turn one call's tensor into (k, d) float64 rows for the detectors.

A tensor with k rows (its first axis) gives k samples. A tensor that does not fit the
signal raises `SignalError` with a stable `reason` (missing_tensor, wrong_dtype,
wrong_shape, non_finite, embedder_error); the caller counts it and skips the call, so a
detector never sees a bad row.
"""

from __future__ import annotations

import numpy as np

from service.monitor.decoding import DecodedCall
from service.monitor.embedder import EmbedderError, OnnxEmbedder
from service.monitor.settings import SignalSettings, TransformSettings

SIGNAL_ERROR_REASONS = (
    "missing_tensor",
    "wrong_dtype",
    "wrong_shape",
    "non_finite",
    "embedder_error",
)


class SignalError(ValueError):
    """A tensor that cannot become rows of this signal; `reason` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def transform_rows(tensor: np.ndarray, transform: TransformSettings) -> np.ndarray:
    """Reshape or flatten to (rows, dims), select columns, softmax; float64 out."""
    if tensor.dtype.kind not in "biuf":
        raise SignalError("wrong_dtype", f"numeric tensor expected, got dtype {tensor.dtype}")
    if transform.reshape is not None:
        try:
            rows = tensor.reshape(transform.reshape)
        except ValueError:
            raise SignalError(
                "wrong_shape", f"shape {list(tensor.shape)} cannot reshape to {transform.reshape}"
            ) from None
    elif tensor.ndim == 0:
        raise SignalError("wrong_shape", "scalar tensor has no batch axis")
    elif tensor.ndim == 1:
        rows = tensor.reshape(-1, 1)  # one value per row
    else:
        rows = tensor.reshape(tensor.shape[0], -1)
    rows = rows.astype(np.float64, copy=False)
    if transform.columns is not None:
        top = max(transform.columns)
        if top >= rows.shape[1]:
            raise SignalError(
                "wrong_shape", f"column {top} selected but rows have {rows.shape[1]} columns"
            )
        rows = rows[:, list(transform.columns)]
    if not np.isfinite(rows).all():
        raise SignalError("non_finite", "tensor holds NaN or infinite values")
    if transform.softmax:
        shifted = rows - rows.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        rows = exp / exp.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(rows)


class SignalExtractor:
    """Rows of one configured signal from decoded calls (or from raw arrays, for references).

    `dims` is the expected vector length once known (given here, or later through
    `expect_dims` from a reference or the first captured rows); rows of any other length are
    refused as wrong_shape.
    """

    def __init__(
        self,
        model: str,
        settings: SignalSettings,
        *,
        embedder: OnnxEmbedder | None = None,
        dims: int | None = None,
    ) -> None:
        if (settings.source.embedder is None) != (embedder is None):
            raise ValueError(f"signal {model}/{settings.name}: embedder given iff configured")
        self.model = model
        self.settings = settings
        self.embedder = embedder
        self._dims = dims

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def dims(self) -> int | None:
        """The vector length rows must have; None until known."""
        return self._dims

    def expect_dims(self, dims: int) -> None:
        """From now on, refuse rows that are not `dims` long (a reference or capture says so)."""
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        self._dims = dims

    def tensor_of(self, call: DecodedCall) -> np.ndarray:
        """The signal's source tensor in `call`; raises missing_tensor."""
        source = self.settings.source
        tensors = call.outputs if source.side == "output" else call.inputs
        tensor = tensors.get(source.tensor)
        if tensor is None:
            where = "response output" if source.side == "output" else "request input"
            raise SignalError(
                "missing_tensor",
                f"{where} {source.tensor!r} not found; present: {', '.join(sorted(tensors))}",
            )
        return tensor

    def rows(self, call: DecodedCall) -> np.ndarray:
        """(k, d) float64 rows from a call; raises `SignalError`."""
        return self.rows_from_tensor(self.tensor_of(call))

    def rows_from_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """(k, d) float64 rows from the raw source tensor; raises `SignalError`."""
        if self.embedder is not None:
            if self.embedder.settings.tokenizer is None and tensor.dtype.kind not in "biuf":
                raise SignalError("wrong_dtype", f"numeric tensor expected, got {tensor.dtype}")
            try:
                embedded = self.embedder.embed(tensor)
            except EmbedderError as exc:
                raise SignalError("embedder_error", str(exc)) from None
            rows = transform_rows(embedded, self.settings.transform)
        else:
            rows = transform_rows(tensor, self.settings.transform)
        if self._dims is not None and rows.shape[1] != self._dims:
            raise SignalError(
                "wrong_shape", f"rows have {rows.shape[1]} dims, the signal has {self._dims}"
            )
        return rows
