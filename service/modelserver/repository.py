"""The transport-free core of the model server: which model answers, and how."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.modelserver.errors import ModelNotFound
from service.modelserver.onnx_model import OnnxModel, TensorSignature


@dataclass(frozen=True)
class ModelDescription:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]


class ModelRepository:
    """Serves one ONNX model under a name and a version ("" means the served version)."""

    def __init__(self, model: OnnxModel, *, name: str, version: str) -> None:
        if not name:
            raise ValueError("model name must not be empty")
        if not version:
            raise ValueError("model version must not be empty")
        self.model = model
        self.name = name
        self.version = version

    def _resolve(self, name: str, version: str) -> OnnxModel:
        if name != self.name:
            raise ModelNotFound(f"model {name!r} not found; this server serves {self.name!r}")
        if version not in ("", self.version):
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; available: [{self.version!r}]"
            )
        return self.model

    def is_ready(self, name: str, version: str) -> bool:
        try:
            self._resolve(name, version)
        except ModelNotFound:
            return False
        return True

    def describe(self, name: str, version: str) -> ModelDescription:
        model = self._resolve(name, version)
        return ModelDescription(
            name=self.name,
            versions=(self.version,),
            platform="onnxruntime_onnx",
            inputs=model.inputs,
            outputs=model.outputs,
        )

    def infer(
        self,
        name: str,
        version: str,
        inputs: Mapping[str, np.ndarray],
        requested_outputs: Sequence[str],
    ) -> dict[str, np.ndarray]:
        return self._resolve(name, version).run(inputs, requested_outputs)
