"""Model signatures: the input and output tensors a suite was built for, and the check at load."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class SuiteMismatchError(ValueError):
    """A suite whose tensors do not fit the model's signature; names the tensor and the mismatch."""

    def __init__(self, suite: str, model: str, tensor: str, reason: str) -> None:
        self.suite = suite
        self.model = model
        self.tensor = tensor
        self.reason = reason
        super().__init__(
            f"suite {suite!r} does not match model {model!r}: tensor {tensor!r}: {reason}"
        )


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a signature in Open Inference Protocol terms (-1 marks a dynamic dim)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


class _OipTensorMetadata(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...


class _OipModelMetadata(Protocol):
    @property
    def inputs(self) -> Sequence[_OipTensorMetadata]: ...
    @property
    def outputs(self) -> Sequence[_OipTensorMetadata]: ...


@dataclass(frozen=True)
class ModelSignature:
    """A model's inputs and outputs, from ONNX or from an OIP ModelMetadataResponse."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSignature:
        return cls(
            tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )

    @classmethod
    def from_oip(cls, metadata: _OipModelMetadata) -> ModelSignature:
        """Reads a ModelMetadataResponse (anything with inputs/outputs of name, datatype, shape)."""

        def specs(items: Iterable[_OipTensorMetadata]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in items
            )

        return cls(specs(metadata.inputs), specs(metadata.outputs))


def _shapes_fit(suite_shape: Sequence[int], model_shape: Sequence[int]) -> bool:
    if len(suite_shape) != len(model_shape):
        return False
    return all(s == m or s == -1 or m == -1 for s, m in zip(suite_shape, model_shape, strict=True))


def check_signature(
    *,
    suite: str,
    model: str,
    input_spec: TensorSpec,
    score_output: str,
    signature: ModelSignature,
) -> None:
    """Raises SuiteMismatchError unless the suite's input and score output fit the model.

    The batch dimension is not compared (a suite row is one sample); every other dimension
    must be equal or dynamic on one side.
    """
    by_name = {t.name: t for t in signature.inputs}
    spec = by_name.get(input_spec.name)
    if spec is None:
        raise SuiteMismatchError(
            suite,
            model,
            input_spec.name,
            f"input not in the model (model inputs: {sorted(by_name)})",
        )
    if spec.datatype != input_spec.datatype:
        raise SuiteMismatchError(
            suite,
            model,
            input_spec.name,
            f"datatype {input_spec.datatype} in the suite, {spec.datatype} in the model",
        )
    if not _shapes_fit(input_spec.shape[1:], spec.shape[1:]):
        raise SuiteMismatchError(
            suite,
            model,
            input_spec.name,
            f"shape {list(input_spec.shape)} in the suite, {list(spec.shape)} in the model",
        )
    outputs = {t.name for t in signature.outputs}
    if score_output not in outputs:
        raise SuiteMismatchError(
            suite,
            model,
            score_output,
            f"output not in the model (model outputs: {sorted(outputs)})",
        )
