"""Probe suites on disk: one npz of inputs, labels, per-row variant and metadata, no pickle.

Arrays: `inputs` (N, *sample shape), `labels` (N,) int64, `variants` (N,) str (which
corruption/severity or attack a row is), `source_index` (N,) int64 (the clean sample a row
came from), `queries` (N,) int64 (build-time queries, -1 where not an attack), and
`metadata`: one JSON string with the model signature, creation time and generator settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.probes.signature import ModelSignature, TensorSpec, check_signature

FORMAT_VERSION = 1
SuiteKind = Literal["corruptions", "square", "hopskipjump", "noise"]
SUITE_KINDS: tuple[SuiteKind, ...] = ("corruptions", "square", "hopskipjump", "noise")
_ARRAYS = ("inputs", "labels", "variants", "source_index", "queries")


class SuiteFormatError(ValueError):
    """A suite file that is not a readable suite (missing arrays, bad metadata, pickle)."""


@dataclass(frozen=True)
class ProbeSuite:
    """An in-memory suite: rows to replay and what they were built for."""

    name: str
    kind: SuiteKind
    inputs: np.ndarray
    labels: np.ndarray
    variants: np.ndarray
    source_index: np.ndarray
    queries: np.ndarray
    input_spec: TensorSpec
    """The model input the rows feed (shape with -1 batch)."""
    score_output: str
    signature: ModelSignature
    """The signature of the model the suite was built against."""
    created_at: float
    generator: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    """Build-time results against the ONNX model (accuracy per variant, attack success...)."""

    def __post_init__(self) -> None:
        n = len(self.inputs)
        for name in _ARRAYS[1:]:
            if len(getattr(self, name)) != n:
                raise SuiteFormatError(
                    f"suite {self.name!r}: {name} has {len(getattr(self, name))} rows, inputs {n}"
                )
        if self.kind not in SUITE_KINDS:
            raise SuiteFormatError(f"suite {self.name!r}: kind must be one of {list(SUITE_KINDS)}")

    def __len__(self) -> int:
        return len(self.inputs)

    def variant_names(self) -> list[str]:
        """Distinct variants in first-seen order."""
        return list(dict.fromkeys(str(v) for v in self.variants))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "created_at": self.created_at,
            "input": self.input_spec.to_json(),
            "score_output": self.score_output,
            "signature": self.signature.to_json(),
            "generator": self.generator,
            "summary": self.summary,
        }

    def digest(self) -> str:
        """A content hash of the rows, so runs are only ever paired on identical probes."""
        h = hashlib.sha256()
        for arr in (self.inputs, self.labels, self.variants.astype("U")):
            h.update(str(arr.dtype).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def check_against(self, model: str, signature: ModelSignature) -> None:
        """Raises SuiteMismatchError unless this suite fits `signature` (see signature.py)."""
        check_signature(
            suite=self.name,
            model=model,
            input_spec=self.input_spec,
            score_output=self.score_output,
            signature=signature,
        )


def save_suite(suite: ProbeSuite, path: Path) -> Path:
    """Writes the suite as npz (write then rename) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        inputs=suite.inputs,
        labels=suite.labels.astype(np.int64),
        variants=suite.variants.astype("U"),
        source_index=suite.source_index.astype(np.int64),
        queries=suite.queries.astype(np.int64),
        metadata=np.array(json.dumps(suite.metadata(), sort_keys=True)),
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_suite(
    path: Path, *, model: str | None = None, signature: ModelSignature | None = None
) -> ProbeSuite:
    """Reads a suite; with `model` and `signature`, refuses one that does not fit the model."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_ARRAYS, "metadata") if k not in data.files]
            if missing:
                raise SuiteFormatError(f"{path}: not a probe suite, missing arrays {missing}")
            arrays = {k: data[k] for k in _ARRAYS}
            meta = json.loads(str(data["metadata"]))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise SuiteFormatError(f"{path}: not a readable probe suite: {exc}") from exc
    except ValueError as exc:  # numpy refuses object arrays without pickle
        if isinstance(exc, SuiteFormatError):
            raise
        raise SuiteFormatError(f"{path}: not a readable probe suite: {exc}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise SuiteFormatError(
            f"{path}: suite format {meta.get('format')!r}, expected {FORMAT_VERSION}"
        )
    try:
        suite = ProbeSuite(
            name=str(meta["name"]),
            kind=meta["kind"],
            inputs=arrays["inputs"],
            labels=arrays["labels"].astype(np.int64),
            variants=arrays["variants"],
            source_index=arrays["source_index"],
            queries=arrays["queries"],
            input_spec=TensorSpec.from_json(meta["input"]),
            score_output=str(meta["score_output"]),
            signature=ModelSignature.from_json(meta["signature"]),
            created_at=float(meta["created_at"]),
            generator=dict(meta.get("generator", {})),
            summary=dict(meta.get("summary", {})),
        )
    except (KeyError, TypeError) as exc:
        raise SuiteFormatError(f"{path}: suite metadata lacks {exc}") from exc
    if model is not None and signature is not None:
        suite.check_against(model, signature)
    return suite
