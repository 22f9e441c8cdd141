"""One ONNX model behind onnxruntime, described in Open Inference Protocol terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.modelserver.errors import InvalidInput
from service.oip.codec import numpy_dtype_of

# onnxruntime's type strings -> OIP datatypes.
_DATATYPE_BY_ORT: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}


@dataclass(frozen=True)
class TensorSignature:
    """A graph input or output: name, OIP datatype, shape with -1 for dynamic dims."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def _signature(arg: ort.NodeArg) -> TensorSignature:
    datatype = _DATATYPE_BY_ORT.get(arg.type, arg.type)
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSignature(arg.name, datatype, shape)


class OnnxModel:
    """An onnxruntime session with input checks that give clients clear errors."""

    def __init__(self, path: Path, *, intra_op_threads: int = 1) -> None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = tuple(_signature(a) for a in self._session.get_inputs())
        self.outputs = tuple(_signature(a) for a in self._session.get_outputs())

    def run(
        self, inputs: Mapping[str, np.ndarray], requested: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Runs the graph; `requested` filters outputs (all when empty)."""
        feed: dict[str, np.ndarray] = {}
        known = {s.name for s in self.inputs}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise InvalidInput(f"unexpected input {unknown[0]!r}; model inputs: {sorted(known)}")
        for spec in self.inputs:
            if spec.name not in inputs:
                raise InvalidInput(f"missing input {spec.name!r}")
            feed[spec.name] = self._checked(spec, inputs[spec.name])
        output_names = [s.name for s in self.outputs]
        for name in requested:
            if name not in output_names:
                raise InvalidInput(f"unknown output {name!r}; model outputs: {output_names}")
        names = list(requested) or output_names
        try:
            values = self._session.run(names, feed)
        except Exception as exc:  # onnxruntime raises its own types for bad feeds
            raise InvalidInput(f"model rejected the inputs: {exc}") from None
        return dict(zip(names, values, strict=True))

    def _checked(self, spec: TensorSignature, value: np.ndarray) -> np.ndarray:
        if spec.shape and value.ndim != len(spec.shape):
            raise InvalidInput(
                f"input {spec.name!r}: expected {len(spec.shape)} dimensions {list(spec.shape)}, "
                f"got shape {list(value.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape, strict=False)):
            if want != -1 and want != got:
                raise InvalidInput(
                    f"input {spec.name!r}: dimension {axis} must be {want}, got {got} "
                    f"(shape {list(value.shape)})"
                )
        if spec.datatype == "BYTES":
            return value.astype(object)
        want_dtype = numpy_dtype_of(spec.datatype)
        if value.dtype != want_dtype:
            raise InvalidInput(
                f"input {spec.name!r}: expected datatype {spec.datatype}, got {value.dtype}"
            )
        return value
