"""Reference samples: stored per signal with metadata, built from files or captured live.

A reference lives at `state_dir/references/<model>/<signal>.npz`: a float64 `data` array of
shape (count, dims) and a JSON `meta` string (model, version, signal, dims, count, created,
source sha256). Files are written atomically (temp file + rename) and read without pickle.

A file that cannot be read is an error naming it. A captured reference is outrider's own
file, though: when it is unreadable it is renamed aside and the signal captures again, so a
damaged state dir costs one capture, not a crash loop. A built one (`outrider reference
build`) is the user's, and only the user can rebuild it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import structlog

from service.monitor.embedder import OnnxEmbedder
from service.monitor.model_versions import UNKNOWN_VERSION
from service.monitor.reference_sources import SourceError, open_source
from service.monitor.settings import PipelineConfig, SignalSettings
from service.monitor.signals import SignalError, SignalExtractor
from service.store.set_aside import move_aside

FORMAT_VERSION = 1

_log = structlog.get_logger("outrider.references")


class ReferenceError(ValueError):
    """A reference that cannot be read, built or stored."""


class ReferenceMismatch(ReferenceError):
    """A stored reference that does not fit the configured signal (dims, dtype, name)."""


@dataclass(frozen=True)
class Reference:
    """A reference sample of one signal: (count, dims) float64 rows plus where they came from."""

    model: str
    version: str
    signal: str
    data: np.ndarray
    created: str
    source_sha256: str

    @property
    def dims(self) -> int:
        return int(self.data.shape[1])

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    def metadata(self) -> dict[str, object]:
        return {
            "format": FORMAT_VERSION,
            "model": self.model,
            "version": self.version,
            "signal": self.signal,
            "dims": self.dims,
            "count": self.count,
            "created": self.created,
            "source_sha256": self.source_sha256,
        }


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def rows_sha256(data: np.ndarray) -> str:
    """Checksum of captured rows (used as the `source_sha256` of a live capture)."""
    return hashlib.sha256(np.ascontiguousarray(data, dtype="<f8").tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ReferenceStore:
    """Reads and writes references under `state_dir/references/`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "references"

    def path(self, model: str, signal: str) -> Path:
        # Model names come from config but may hold '/' or '..': quote them into one segment.
        return self.root / quote(model, safe="") / f"{quote(signal, safe='')}.npz"

    def save(self, reference: Reference, path: Path | None = None) -> Path:
        """Writes atomically; returns the file written."""
        target = path if path is not None else self.path(reference.model, reference.signal)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            data=np.ascontiguousarray(reference.data, dtype=np.float64),
            meta=np.array(json.dumps(reference.metadata())),
        )
        fd, tmp = tempfile.mkstemp(prefix=".ref-", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buffer.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def load(self, model: str, signal: str, path: Path | None = None) -> Reference | None:
        """The stored reference, None when there is none; raises `ReferenceError` if unreadable."""
        source = path if path is not None else self.path(model, signal)
        if not source.exists():
            return None
        return read_reference(source)

    def set_aside(self, path: Path, *, reason: str) -> Path | None:
        """Renames an unusable reference to `<name>.corrupt-<UTC time>` and logs why.

        Returns where it went (None if it was gone already); raises `ReferenceError` when it
        cannot be moved, since it would then be read again.
        """
        try:
            aside = move_aside(path, path.stem)
        except OSError as exc:
            raise ReferenceError(f"{reason}; moving it aside failed too ({exc})") from None
        if aside is None:
            return None
        _log.warning("reference_set_aside", path=str(path), moved_to=str(aside), reason=reason)
        return aside


def read_reference(path: Path) -> Reference:
    """Reads one reference file; raises `ReferenceError` naming the file and the problem."""
    data, meta = _read_members(path)
    if not isinstance(meta, dict):
        raise ReferenceError(f"reference {path}: metadata is not a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise ReferenceError(f"reference {path}: unknown format {meta.get('format')!r}")
    if data.ndim != 2 or data.dtype != np.float64:
        raise ReferenceMismatch(
            f"reference {path}: data must be 2-D float64, got {data.dtype} {list(data.shape)}"
        )
    if data.shape[0] == 0 or not np.isfinite(data).all():
        raise ReferenceError(f"reference {path}: empty or holds NaN/infinite values")
    try:
        return Reference(
            model=str(meta["model"]),
            version=str(meta["version"]),
            signal=str(meta["signal"]),
            data=data,
            created=str(meta["created"]),
            source_sha256=str(meta["source_sha256"]),
        )
    except KeyError as exc:
        raise ReferenceError(f"reference {path}: metadata lacks {exc}") from None


def _error_name(exc: BaseException) -> str:
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _read_members(path: Path) -> tuple[np.ndarray, object]:
    """The `data` array and the parsed `meta` JSON of a reference file, as stored."""
    try:
        with path.open("rb") as fh:
            # Checked first: numpy would take anything else for a pickle and suggest loading
            # it unsafely, which is no advice to give about a truncated file.
            if zipfile.is_zipfile(fh):
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as npz:
                    return np.asarray(npz["data"]), json.loads(str(npz["meta"]))
    # A damaged archive fails in many ways (BadZipFile, EOFError, zlib.error, a tokenize
    # error in a .npy header, a missing member...): whichever it is, say which file and what.
    except Exception as exc:
        raise ReferenceError(f"reference {path}: unreadable ({_error_name(exc)}: {exc})") from None
    raise ReferenceError(
        f"reference {path}: unreadable (not an .npz archive: truncated, or not a reference)"
    )


def set_aside_unreadable_captures(config: PipelineConfig, state_dir: Path) -> list[Path]:
    """Moves aside the captured references that cannot be read, so those signals capture again.

    Run before the pipeline loads its references; returns the files moved. Only signals with
    `reference.capture` are touched: a reference the user built and configured by `path`
    stays where it is, and loading it fails with its path and what is wrong.
    """
    store = ReferenceStore(state_dir)
    moved = []
    for model, model_settings in config.models.items():
        for signal in model_settings.signals:
            if signal.reference.capture is None:
                continue
            path = store.path(model, signal.name)
            try:
                store.load(model, signal.name)
            except ReferenceError as exc:
                aside = store.set_aside(path, reason=f"{exc}; capturing it again")
                if aside is not None:
                    moved.append(aside)
    return moved


def expected_dims(settings: SignalSettings, embedder: OnnxEmbedder | None) -> int | None:
    """The vector length the configured signal will produce, when known before any traffic."""
    transform = settings.transform
    if transform.columns is not None:
        return len(transform.columns)
    if transform.reshape is not None and transform.reshape[1] > 0:
        return transform.reshape[1]
    if embedder is not None:
        return embedder.dims
    return None


def check_reference(
    reference: Reference, model: str, settings: SignalSettings, embedder: OnnxEmbedder | None
) -> None:
    """Refuses a reference that was built for another signal or has other dims."""
    if reference.model != model or reference.signal != settings.name:
        raise ReferenceMismatch(
            f"signal {model}/{settings.name}: reference was built for "
            f"{reference.model}/{reference.signal}"
        )
    dims = expected_dims(settings, embedder)
    if dims is not None and dims != reference.dims:
        raise ReferenceMismatch(
            f"signal {model}/{settings.name}: reference has {reference.dims} dims, "
            f"the signal produces {dims}; rebuild it with `outrider reference build`"
        )


def find_signal(config: PipelineConfig, qualified: str) -> tuple[str, SignalSettings]:
    """The (model, signal settings) named `MODEL/SIGNAL`; raises `ReferenceError`."""
    model, sep, signal = qualified.rpartition("/")
    if not sep or not model or not signal:
        raise ReferenceError(f"--signal must be MODEL/SIGNAL, got {qualified!r}")
    model_settings = config.models.get(model)
    if model_settings is None:
        known = ", ".join(sorted(config.models)) or "none"
        raise ReferenceError(f"model {model!r} is not configured (configured: {known})")
    for s in model_settings.signals:
        if s.name == signal:
            return model, s
    known = ", ".join(s.name for s in model_settings.signals)
    raise ReferenceError(f"model {model!r} has no signal {signal!r} (signals: {known})")


def build_reference(
    config: PipelineConfig,
    signal: str,
    source_path: Path,
    *,
    state_dir: Path,
    version: str = "",
    columns: Sequence[str] = (),
    progress: bool = True,
) -> tuple[Reference, Path]:
    """Builds and stores the reference of `MODEL/SIGNAL` from a raw file; returns it and its path.

    The file holds the signal's source tensor, one row per record (see `reference_sources`
    for the file types and `columns`); the signal's transform is applied, and an embedder
    signal embeds the raw inputs. The file is read and embedded in chunks, so memory holds
    one chunk of raw rows plus the reference itself. `version` records which model version
    the rows came from; a reference applies to every version of its model whatever it says.
    """
    model, settings = find_signal(config, signal)
    embedder_settings = settings.source.embedder
    embedder = OnnxEmbedder(embedder_settings) if embedder_settings is not None else None
    extractor = SignalExtractor(model, settings, embedder=embedder)
    text = embedder_settings is not None and embedder_settings.tokenizer is not None
    try:
        source = open_source(
            source_path, text=text, columns=columns, tensor=settings.source.tensor
        )
    except SourceError as exc:
        raise ReferenceError(str(exc)) from None
    if source.total == 0:
        raise ReferenceError(f"{source_path}: no rows")
    from rich.console import Console  # imported here: only the CLI path draws progress
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    data: np.ndarray | None = None
    done = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    ) as bar:
        task = bar.add_task(f"reference {model}/{settings.name}", total=source.total)
        try:
            for chunk in source.chunks:
                rows = _chunk_rows(extractor, chunk, source_path, done)
                if data is None:
                    data = np.empty((source.total, rows.shape[1]), dtype=np.float64)
                if rows.shape[1] != data.shape[1] or done + len(rows) > source.total:
                    raise ReferenceError(
                        f"{source_path}: rows {done}..{done + len(rows) - 1} have "
                        f"{rows.shape[1]} dims after {data.shape[1]}, or the file grew "
                        "while it was read"
                    )
                data[done : done + len(rows)] = rows
                done += len(rows)
                bar.update(task, advance=len(rows))
        except SourceError as exc:
            raise ReferenceError(str(exc)) from None
    if data is None or done == 0:
        raise ReferenceError(f"{source_path}: no rows")
    reference = Reference(
        model=model,
        version=version,
        signal=settings.name,
        data=data[:done],
        created=utc_now_iso(),
        source_sha256=file_sha256(source_path),
    )
    store = ReferenceStore(state_dir)
    path = store.save(reference, settings.reference.path)
    return reference, path


def _chunk_rows(
    extractor: SignalExtractor, chunk: np.ndarray, source_path: Path, first: int
) -> np.ndarray:
    try:
        return extractor.rows_from_tensor(chunk)
    except SignalError as exc:
        raise ReferenceError(
            f"{source_path}: rows {first}..{first + len(chunk) - 1}: {exc} ({exc.reason})"
        ) from None


def reference_version_labels(built_for: str, traffic_versions: Iterable[str]) -> list[str]:
    """The `version` label values `outrider_reference_samples` reports a reference under.

    A reference applies to every version of its model, so it is reported under each version
    label its signal's traffic has (the labels of the drift metrics, so the two join on
    `version`); before any traffic, under the version it was built (`--version`) or
    captured from, `unknown` when none was given.
    """
    versions = sorted(set(traffic_versions))
    return versions if versions else [built_for or UNKNOWN_VERSION]


class ReferenceCapture:
    """Collects the first `size` live rows of a signal; `done` once full."""

    def __init__(self, model: str, signal: str, size: int) -> None:
        self.model = model
        self.signal = signal
        self.size = size
        self.version = ""
        self._parts: list[np.ndarray] = []
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def done(self) -> bool:
        return self._count >= self.size

    def add(self, rows: np.ndarray, version: str) -> None:
        if self.done or rows.shape[0] == 0:
            return
        if self._parts and rows.shape[1] != self._parts[0].shape[1]:
            raise SignalError(
                "wrong_shape",
                f"rows have {rows.shape[1]} dims, the capture has {self._parts[0].shape[1]}",
            )
        if not self.version:
            self.version = version
        take = rows[: self.size - self._count]
        self._parts.append(np.array(take, dtype=np.float64))
        self._count += take.shape[0]

    def rows(self) -> np.ndarray:
        if not self._parts:
            return np.empty((0, 0), dtype=np.float64)
        return np.concatenate(self._parts, axis=0)

    def reference(self) -> Reference:
        data = self.rows()
        return Reference(
            model=self.model,
            version=self.version,
            signal=self.signal,
            data=data,
            created=utc_now_iso(),
            source_sha256=rows_sha256(data),
        )

    def state_dict(self) -> dict[str, object]:
        return {"rows": self.rows(), "version": self.version}

    def load_state_dict(self, state: dict[str, object]) -> None:
        rows = np.asarray(state["rows"], dtype=np.float64)
        self._parts = [rows[: self.size]] if rows.size else []
        self._count = int(self._parts[0].shape[0]) if self._parts else 0
        self.version = str(state.get("version", ""))
