"""An ONNX embedder: runs a model file on an input tensor to produce one vector per row.

The session gets few intra-op threads (one by default) and sequential execution so it never
competes with the relay for cores; rows are embedded in batches of `batch_size`. Text
(BYTES) inputs go through a `tokenizers` tokenizer.json when one is configured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from service.monitor.settings import EmbedderSettings

_ORT_TO_NUMPY: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class EmbedderError(ValueError):
    """An embedder that cannot load, or an input it cannot embed."""


class OnnxEmbedder:
    """Embeds numeric or text rows with one onnxruntime session; `embed` returns (k, d)."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(settings.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(f"cannot load embedder {settings.path}: {exc}") from None
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        output_names = [o.name for o in outputs]
        if settings.output is not None and settings.output not in output_names:
            raise EmbedderError(
                f"embedder {settings.path} has no output {settings.output!r}; "
                f"outputs: {', '.join(output_names)}"
            )
        self._output = settings.output if settings.output is not None else output_names[0]
        self._inputs = {i.name: i for i in inputs}
        self._tokenizer: Any = None
        if settings.tokenizer is not None:
            self._tokenizer = _load_tokenizer(settings.tokenizer, settings.max_length)
        elif len(inputs) != 1:
            raise EmbedderError(
                f"embedder {settings.path} takes {len(inputs)} inputs; numeric embedders take "
                "one (configure a tokenizer for text models)"
            )
        out_shape = next(o.shape for o in outputs if o.name == self._output)
        self.dims: int | None = _static_dims(out_shape)

    def embed(self, tensor: np.ndarray) -> np.ndarray:
        """(k, d) float64 embeddings of the k rows of `tensor` (first axis is the batch)."""
        if tensor.ndim == 0:
            raise EmbedderError("embedder input must have a batch axis")
        size = self.settings.batch_size
        parts = [self._run(tensor[i : i + size]) for i in range(0, tensor.shape[0], size)]
        if not parts:
            return np.empty((0, self.dims or 0), dtype=np.float64)
        return np.concatenate(parts, axis=0)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        mask: np.ndarray | None = None
        if self._tokenizer is not None:
            feeds, mask = self._tokenize(chunk)
        else:
            (meta,) = self._inputs.values()
            dtype = _ORT_TO_NUMPY.get(meta.type)
            if dtype is None or chunk.dtype.kind in "OSU":
                raise EmbedderError(f"cannot feed {chunk.dtype} to embedder input type {meta.type}")
            feeds = {meta.name: np.ascontiguousarray(chunk, dtype=dtype)}
        try:
            (out,) = self._session.run([self._output], feeds)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(f"embedder run failed: {exc}") from None
        result = np.asarray(out, dtype=np.float64)
        if result.ndim == 3:
            # Token embeddings (batch, seq, hidden): mean over real tokens.
            if mask is not None:
                weights = mask.astype(np.float64)[:, :, None]
                result = (result * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            else:
                result = result.mean(axis=1)
        return result.reshape(result.shape[0], -1)

    def _tokenize(self, chunk: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        texts = []
        for item in chunk.reshape(chunk.shape[0], -1)[:, 0]:
            if isinstance(item, bytes):
                texts.append(item.decode("utf-8", errors="replace"))
            elif isinstance(item, str):
                texts.append(item)
            else:
                raise EmbedderError(f"text embedder needs BYTES rows, got {type(item).__name__}")
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        candidates = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {}
        for name in self._inputs:
            if name not in candidates:
                raise EmbedderError(
                    f"text embedder input {name!r} is not one of {', '.join(candidates)}"
                )
            feeds[name] = candidates[name]
        return feeds, mask


def _load_tokenizer(path: object, max_length: int) -> Any:
    try:
        from tokenizers import Tokenizer  # optional: only text signals need it
    except ImportError:
        raise EmbedderError(
            "text embedders need the `tokenizers` package (pip install tokenizers)"
        ) from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own untyped errors
        raise EmbedderError(f"cannot load tokenizer {path}: {exc}") from None
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length)
    return tokenizer


def _static_dims(shape: list[Any]) -> int | None:
    """Vector length of an output shape when known statically (batch axis excluded)."""
    rest = shape[1:]
    if len(rest) == 2:  # token embeddings are pooled over the sequence axis
        rest = rest[1:]
    dims = 1
    for d in rest:
        if not isinstance(d, int) or d <= 0:
            return None
        dims *= d
    return dims
