"""An ONNX classifier behind onnxruntime, queried as a black box (scores only, no gradients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from service.probes.signature import ModelSignature, TensorSpec

# onnxruntime's type strings -> OIP datatypes.
_ORT_TO_OIP = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
}
_OIP_TO_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxClassifier:
    """Scores a batch of samples with an ONNX model; the probe builders' only view of a model.

    `input_name` defaults to the model's only input; `score_output` to "probabilities" when
    the model has it, else its first output. Threads are capped because this machine (and a
    sidecar pod) is shared with the model server.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        input_name: str | None = None,
        score_output: str | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = [
            TensorSpec(i.name, _ORT_TO_OIP.get(i.type, i.type), _dims(i.shape))
            for i in self._session.get_inputs()
        ]
        outputs = [
            TensorSpec(o.name, _ORT_TO_OIP.get(o.type, o.type), _dims(o.shape))
            for o in self._session.get_outputs()
        ]
        self.signature = ModelSignature(tuple(inputs), tuple(outputs))
        if input_name is None:
            if len(inputs) != 1:
                raise ValueError(
                    f"model has {len(inputs)} inputs {[i.name for i in inputs]}: pass input_name"
                )
            input_name = inputs[0].name
        names = [o.name for o in outputs]
        if score_output is None:
            score_output = "probabilities" if "probabilities" in names else names[0]
        if input_name not in {i.name for i in inputs}:
            raise ValueError(f"input_name {input_name!r} not among {[i.name for i in inputs]}")
        if score_output not in names:
            raise ValueError(f"score_output {score_output!r} not among {names}")
        self.input_name = input_name
        self.score_output = score_output
        self.input_spec = next(i for i in inputs if i.name == input_name)
        self.dtype = np.dtype(_OIP_TO_NUMPY.get(self.input_spec.datatype, np.float32))
        self.metadata_props: dict[str, str] = {
            p.key: p.value
            for p in onnx.load(str(self.path), load_external_data=False).metadata_props
        }

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the input shape without its batch dimension)."""
        return self.input_spec.shape[1:]

    def image_shape(self) -> tuple[int, ...] | None:
        """The image shape the model's metadata names (`image_shape` prop), if any."""
        raw = self.metadata_props.get("image_shape")
        if raw is None:
            return None
        try:
            shape = tuple(int(d) for d in json.loads(raw))
        except (ValueError, TypeError):
            return None
        return shape or None

    def value_range(self) -> tuple[float, float] | None:
        """The input value range the model's metadata names (`pixel_max` prop), if any."""
        raw = self.metadata_props.get("pixel_max")
        if raw is None:
            return None
        try:
            return (0.0, float(raw))
        except ValueError:
            return None

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Returns the score output (batch, classes) for a batch of samples."""
        if len(x) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        (out,) = self._session.run(
            [self.score_output], {self.input_name: np.ascontiguousarray(x, dtype=self.dtype)}
        )
        return np.asarray(out)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Returns the top class per sample."""
        return np.asarray(np.argmax(self.scores(x), axis=1), dtype=np.int64)
