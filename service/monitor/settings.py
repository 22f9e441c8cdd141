"""Settings for the `models:` and `monitor:` config sections: signals, references, detectors.

Every model is strict (unknown keys are errors) so `outrider config check` can name each
mistake by its path, e.g. `models.demo.signals.0.detectors.1.type`. An example:

    models:
      demo:
        signals:
          - name: embedding
            source: {output: embedding}          # or {input: pixels}, or {embedder: {...}}
            reference: {capture: 1000}           # or {path: ref.npz}; default: state dir
            detectors:
              - {type: ks, window: 500, params: {alpha: 0.01}}
              - {type: mmd, window: 200, reference_rows: 500}
              - {type: cvm, window_seconds: 60}  # tumbling 60 s windows
          - name: confidence
            source: {output: logits}
            transform: {softmax: true}
            detectors: [{type: rff_mmd_online, window: 50, params: {ert: 1000}}]
    monitor: {queue_size: 4096, max_samples_per_second: 5000}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from service.monitor.detector_registry import DETECTORS, detector_kind

DetectorType = Annotated[str, AfterValidator(lambda name: detector_kind(name).type)]
"""A registered detector type (see `detector_registry`)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedderSettings(_Strict):
    """An ONNX model that outrider runs itself to turn an input tensor into vectors.

    A (batch, d) output is used as it is; a (batch, seq, d) output of token vectors is
    mean-pooled over the attention mask (text) or over every position (numeric); text models
    get input_ids, attention_mask and token_type_ids as they declare them.
    """

    path: Path = Field(description="ONNX model file of the embedder.")
    input: str = Field(description="Name of the request input tensor fed to the embedder.")
    output: str | None = Field(
        default=None,
        description="Name of the embedder's output to use; default: its first output.",
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        le=65536,
        description="Rows per onnxruntime call. Text rows are sorted by token count first and "
        "each call is padded only to its longest row.",
    )
    intra_op_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="onnxruntime intra-op threads; kept small so the relay never waits.",
    )
    tokenizer: Path | None = Field(
        default=None,
        description="tokenizer.json for BYTES (text) inputs; needs the `tokenizers` package.",
    )
    max_length: int = Field(
        default=128,
        ge=1,
        le=8192,
        description="Texts longer than this many tokens are truncated (padding goes only to "
        "the longest row of each batch, never to this length).",
    )
    normalize: bool = Field(
        default=False,
        description="Divide each embedding by its L2 norm (after mean pooling), as "
        "sentence-embedding models meant for cosine similarity expect.",
    )


class SignalSource(_Strict):
    """Where a signal's vectors come from: exactly one of input, output or embedder."""

    input: str | None = Field(default=None, description="Request input tensor name.")
    output: str | None = Field(default=None, description="Response output tensor name.")
    embedder: EmbedderSettings | None = Field(
        default=None, description="ONNX embedder run on a request input tensor."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SignalSource:
        given = [k for k in ("input", "output", "embedder") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a signal source needs exactly one of input, output or embedder; "
                f"got {', '.join(given) if given else 'none'}"
            )
        return self

    @property
    def tensor(self) -> str:
        """The name of the tensor this signal reads (the embedder's input for embedders)."""
        if self.embedder is not None:
            return self.embedder.input
        return self.input if self.input is not None else str(self.output)

    @property
    def side(self) -> Literal["input", "output"]:
        """Whether the tensor is in the request (input) or the response (output)."""
        return "output" if self.output is not None else "input"


class TransformSettings(_Strict):
    """How one tensor becomes rows: reshape or flatten, select columns, softmax."""

    reshape: tuple[int, ...] | None = Field(
        default=None,
        description="Reshape the whole tensor to (rows, dims) first; one entry may be -1.",
    )
    columns: tuple[int, ...] | None = Field(
        default=None, description="Keep only these column indices (after flattening)."
    )
    softmax: bool = Field(default=False, description="Apply a softmax to each row (logits).")

    @model_validator(mode="after")
    def _check(self) -> TransformSettings:
        if self.reshape is not None:
            if len(self.reshape) != 2:
                raise ValueError(f"reshape must have 2 entries (rows, dims), got {self.reshape}")
            if sum(1 for d in self.reshape if d == -1) > 1:
                raise ValueError(f"reshape may have at most one -1, got {self.reshape}")
            if any(d == 0 or d < -1 for d in self.reshape):
                raise ValueError(f"reshape entries must be positive or -1, got {self.reshape}")
        if self.columns is not None:
            if not self.columns:
                raise ValueError("columns must not be empty")
            if any(c < 0 for c in self.columns):
                raise ValueError(f"columns must be >= 0, got {self.columns}")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError(f"columns must not repeat, got {self.columns}")
        return self


class ReferenceSettings(_Strict):
    """The reference sample a signal is compared against: a stored file or a live capture."""

    path: Path | None = Field(
        default=None,
        description="A reference built by `outrider reference build` (.npz); default location "
        "is state_dir/references/<model>/<signal>.npz.",
    )
    capture: int | None = Field(
        default=None,
        ge=10,
        le=10_000_000,
        description="Take the first N live samples as the reference (persisted once full).",
    )

    @model_validator(mode="after")
    def _one(self) -> ReferenceSettings:
        if self.path is not None and self.capture is not None:
            raise ValueError("reference takes either path or capture, not both")
        return self


class DetectorSettings(_Strict):
    """One detector on a signal, with its window and its own parameters."""

    type: DetectorType = Field(
        description="Detector type: " + ", ".join(DETECTORS) + "."
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$",
        description="Label value for this detector; default: the type.",
    )
    window: int | None = Field(
        default=None, ge=2, le=1_000_000, description="Window length in samples."
    )
    window_seconds: float | None = Field(
        default=None, gt=0, le=86_400, description="Window length in seconds."
    )
    reference_rows: int | None = Field(
        default=None,
        ge=10,
        description="Fit on a seeded random subset of at most this many reference rows "
        "(bounds the cost of kernel tests such as mmd).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra constructor arguments for the detector (e.g. alpha, ert, seed).",
    )

    @model_validator(mode="after")
    def _window(self) -> DetectorSettings:
        if self.window is None and self.window_seconds is None:
            raise ValueError("a detector needs window (samples), window_seconds, or both")
        online = detector_kind(self.type).role == "online"
        if online and (self.window is None or self.window_seconds is not None):
            raise ValueError(
                f"{self.type} is an online detector: give `window` (samples), not window_seconds"
            )
        for reserved in ("reference", "window_size"):
            if reserved in self.params:
                raise ValueError(
                    f"params.{reserved} is set by outrider; use reference/window instead"
                )
        return self

    @property
    def label(self) -> str:
        """The value of the `detector` label."""
        return self.name if self.name is not None else self.type


class SignalSettings(_Strict):
    """A named stream of vectors per model, fed to its detectors."""

    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$", description="Signal name (a label value)."
    )
    source: SignalSource = Field(description="Tensor or embedder the vectors come from.")
    transform: TransformSettings = Field(
        default_factory=TransformSettings, description="Tensor -> rows transform."
    )
    reference: ReferenceSettings = Field(
        default_factory=ReferenceSettings, description="Reference file or live capture."
    )
    detectors: tuple[DetectorSettings, ...] = Field(
        description="Detectors evaluated on this signal (at least one)."
    )

    @field_validator("detectors")
    @classmethod
    def _some_detectors(cls, value: tuple[DetectorSettings, ...]) -> tuple[DetectorSettings, ...]:
        # An after-validator (not min_length) so a bad entry is not also reported as "empty".
        if not value:
            raise ValueError("a signal needs at least one detector")
        return value

    @model_validator(mode="after")
    def _unique_detectors(self) -> SignalSettings:
        labels = [d.label for d in self.detectors]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(
                f"detector names must be unique per signal; repeated: {', '.join(dupes)} "
                "(set `name:` on one of them)"
            )
        if self.source.embedder is not None and self.transform.reshape is not None:
            raise ValueError("reshape does not apply to embedder signals")
        return self


class ModelSettings(_Strict):
    """What outrider monitors for one model name."""

    signals: tuple[SignalSettings, ...] = Field(
        description="Signals computed from this model's traffic (at least one)."
    )

    @field_validator("signals")
    @classmethod
    def _some_signals(cls, value: tuple[SignalSettings, ...]) -> tuple[SignalSettings, ...]:
        if not value:
            raise ValueError("a model needs at least one signal")
        return value

    @model_validator(mode="after")
    def _unique_signals(self) -> ModelSettings:
        names = [s.name for s in self.signals]
        dupes = sorted({x for x in names if names.count(x) > 1})
        if dupes:
            raise ValueError(f"signal names must be unique per model; repeated: {', '.join(dupes)}")
        return self


class MonitorSettings(_Strict):
    """The monitor worker: queue, batching and shedding (label limits: `labels`)."""

    queue_size: int = Field(
        default=4096, ge=1, le=1_000_000, description="Observations waiting for the worker."
    )
    batch_size: int = Field(
        default=256, ge=1, le=100_000, description="Observations the worker takes per cycle."
    )
    evaluation_interval_seconds: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="Longest wait before queued samples reach the detectors.",
    )
    max_lag_seconds: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="Observations older than this when the worker reaches them are shed.",
    )
    max_samples_per_second: float | None = Field(
        default=5000.0,
        gt=0,
        description="Rows per second per signal fed to detectors; the rest are shed (counted).",
    )
    example_ids: int = Field(
        default=5, ge=0, le=100, description="Recent request ids kept per signal as evidence."
    )
    log_payloads: bool = Field(
        default=False, description="Allow tensor values in logs and evidence."
    )
    fetch_model_metadata: bool = Field(
        default=True,
        description="When neither response nor request name a version, ask the upstream once.",
    )


class PipelineConfig(Protocol):
    """What the monitor pipeline reads from the root settings."""

    @property
    def models(self) -> Mapping[str, ModelSettings]: ...

    @property
    def monitor(self) -> MonitorSettings: ...


class PipelineSettings(_Strict):
    """The two sections the pipeline needs, standalone (tests, benchmarks, tools)."""

    models: dict[str, ModelSettings] = Field(
        default_factory=dict, description="Monitored models by name."
    )
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings, description="Monitor worker settings."
    )
