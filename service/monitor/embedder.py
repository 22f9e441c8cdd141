"""An ONNX embedder: runs a model file on an input tensor to produce one vector per row.

What it does to the model's output, in order:

1. Text (BYTES) rows are tokenized with the configured tokenizer.json, truncated at
   `max_length` tokens, sorted by token count and run in batches of at most `batch_size`
   rows and little padding, each padded only to its longest row (see `token_batches`).
   The model gets `input_ids`, `attention_mask` (1 on real tokens) and, when it has that
   input, `token_type_ids` (the tokenizer's type ids: all 0 for one text). Numeric rows go
   in batches of `batch_size`.
2. The chosen output (`output`, default the first) is read per row: a (batch, d) output is
   used as it is (a model that pools inside its graph); a (batch, seq, d) output of token
   vectors is mean-pooled over the tokens whose attention mask is 1 (over every position
   for numeric inputs); anything else is flattened per row.
3. With `normalize`, each vector is divided by its L2 norm (a zero vector stays zero).

Because padding is masked out of attention and pooling, a row's vector does not depend on
the rows it was batched with (equal to 1e-5, checked by `benchmarks.embedder`).

The session is configured for a sidecar: `intra_op_threads` threads (one by default), one
inter-op thread, sequential execution and no spinning threads, so it never busy-waits on
the relay's cores; full graph optimisation; denormal floats flushed to zero; no
memory-pattern planning (the input shape changes with every batch's length, and a plan per
shape is wasted work).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnxruntime as ort

from service.monitor.settings import EmbedderSettings
from service.monitor.token_batches import PADDING_RATIO, TokenBatcher

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

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class EmbedderError(ValueError):
    """An embedder that cannot load, or an input it cannot embed."""


def sidecar_session_options(intra_op_threads: int) -> ort.SessionOptions:
    """onnxruntime options for a model that shares its pod with the relay (see module doc)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Denormal floats only slow the CPU down: 4-9 % less CPU per short text on the tuning
    # texts (pyjokes), with pooled vectors unchanged (max difference 0).
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return options


class OnnxEmbedder:
    """Embeds numeric or text rows with one onnxruntime session; `embed` returns (k, d).

    Safe to call from several threads (calls take turns: the token buffers are reused).
    """

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        try:
            self._session = ort.InferenceSession(
                str(settings.path),
                sess_options=sidecar_session_options(settings.intra_op_threads),
                providers=["CPUExecutionProvider"],
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
        self._lock = threading.Lock()
        self._batcher: TokenBatcher | None = None
        if settings.tokenizer is not None:
            unknown = [name for name in self._inputs if name not in TEXT_INPUTS]
            if unknown or "input_ids" not in self._inputs:
                raise EmbedderError(
                    f"text embedder {settings.path} takes inputs {', '.join(self._inputs)}; "
                    f"a text model takes input_ids and optionally attention_mask and "
                    "token_type_ids"
                )
            self._batcher = TokenBatcher(
                _load_tokenizer(settings.tokenizer),
                max_length=settings.max_length,
                batch_size=settings.batch_size,
                padding_ratio=PADDING_RATIO if "attention_mask" in self._inputs else 0.0,
            )
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
        with self._lock:
            if self._batcher is not None:
                result = self._embed_texts(_texts(tensor))
            else:
                result = self._embed_numbers(tensor)
        if self.settings.normalize:
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            result = np.divide(result, norms, out=np.zeros_like(result), where=norms > 0)
        return result

    def token_counts(self, texts: list[str]) -> np.ndarray:
        """Tokens per text as this embedder feeds them (truncated, special tokens included)."""
        if self._batcher is None:
            raise EmbedderError("token counts need a text embedder (a tokenizer)")
        return self._batcher.token_counts(texts)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        assert self._batcher is not None
        result: np.ndarray | None = None
        for batch in self._batcher.batches(texts):
            feeds = {
                name: getattr(batch, name) for name in TEXT_INPUTS if name in self._inputs
            }
            pooled = _pool(self._run(feeds), batch.attention_mask)
            if result is None:
                result = np.empty((len(texts), pooled.shape[1]), dtype=np.float64)
            result[batch.rows] = pooled
        if result is None:
            return np.empty((0, self.dims or 0), dtype=np.float64)
        return result

    def _embed_numbers(self, tensor: np.ndarray) -> np.ndarray:
        (meta,) = self._inputs.values()
        dtype = _ORT_TO_NUMPY.get(meta.type)
        if dtype is None or tensor.dtype.kind in "OSU":
            raise EmbedderError(f"cannot feed {tensor.dtype} to embedder input type {meta.type}")
        size = self.settings.batch_size
        parts = [
            _pool(self._run({meta.name: np.ascontiguousarray(tensor[i : i + size], dtype=dtype)}))
            for i in range(0, tensor.shape[0], size)
        ]
        if not parts:
            return np.empty((0, self.dims or 0), dtype=np.float64)
        return np.concatenate(parts, axis=0)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            (out,) = self._session.run([self._output], feeds)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(f"embedder run failed: {exc}") from None
        return np.asarray(out)


def _pool(out: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(batch, d) float64 from a model output: token vectors mean-pooled over the mask."""
    if out.ndim != 3:
        return np.asarray(out.reshape(out.shape[0], -1), dtype=np.float64)
    tokens = out.astype(np.float64)
    if mask is None:
        return np.asarray(tokens.mean(axis=1))
    weights = mask.astype(np.float64)
    summed = np.matmul(weights[:, None, :], tokens)[:, 0, :]
    return np.asarray(summed / np.maximum(weights.sum(axis=1, keepdims=True), 1.0))


def _texts(tensor: np.ndarray) -> list[str]:
    """The first element of every row as text (BYTES rows are UTF-8)."""
    texts = []
    for item in tensor.reshape(tensor.shape[0], -1)[:, 0] if tensor.size else []:
        if isinstance(item, bytes):
            texts.append(item.decode("utf-8", errors="replace"))
        elif isinstance(item, str):
            texts.append(item)
        else:
            raise EmbedderError(f"text embedder needs BYTES rows, got {type(item).__name__}")
    return texts


def _load_tokenizer(path: object) -> Any:
    try:
        from tokenizers import Tokenizer  # optional: only text signals need it
    except ImportError:
        raise EmbedderError(
            "text embedders need the `tokenizers` package (pip install tokenizers, or "
            "pip install 'outrider[text]')"
        ) from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own untyped errors
        raise EmbedderError(f"cannot load tokenizer {path}: {exc}") from None


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
