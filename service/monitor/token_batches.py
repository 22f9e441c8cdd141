"""Text rows to padded token batches: sorted by length, padded to each batch's longest row.

Padding every text to `max_length` makes a 16-token headline cost what a 128-token one
does. Rows are tokenized once, sorted by token count and cut into batches of at most
`batch_size` rows and little padding (`PADDING_RATIO`); each batch is padded only to its
own longest row, so short texts travel with short texts. The attention mask marks the
real tokens (padding is masked out of attention and of the mean pooling), so the pooled
vector of a row does not depend on its batch.

The id, mask and type-id arrays of a batch are views of buffers owned by the batcher and
reused by the next batch: read them before asking for the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Padding tokens allowed per real token in one batch. Chosen on short jokes (pyjokes), not on
# the benchmark's fortunes: with 3, 12 and 64 random texts per call, a quarter cost 10-25 %
# less CPU per row than one text per call, where one batch padded to its longest text cost
# up to 85 % more.
PADDING_RATIO = 0.25


@dataclass(frozen=True)
class TokenBatch:
    """One padded batch: which input rows it holds and their (rows, length) int64 arrays."""

    rows: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class TokenBatcher:
    """Tokenizes text rows with a `tokenizers.Tokenizer` into length-sorted padded batches."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        batch_size: int,
        padding_ratio: float = PADDING_RATIO,
    ) -> None:
        if max_length < 1 or batch_size < 1 or padding_ratio < 0:
            raise ValueError(
                "max_length and batch_size must be >= 1 and padding_ratio >= 0, got "
                f"{max_length}, {batch_size}, {padding_ratio}"
            )
        self.max_length = max_length
        self.batch_size = batch_size
        # 0 for a model without an attention_mask input: padding would reach its
        # attention, so a batch then holds rows of one length only.
        self.padding_ratio = padding_ratio
        self._tokenizer = tokenizer
        # Padding is ours (per batch); truncation is the tokenizer's, at max_length tokens.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        size = batch_size * max_length
        self._ids = np.zeros(size, dtype=np.int64)
        self._mask = np.zeros(size, dtype=np.int64)
        self._types = np.zeros(size, dtype=np.int64)

    def batches(self, texts: Sequence[str]) -> Iterator[TokenBatch]:
        """The texts as padded batches, shortest first; `rows` says which texts each holds."""
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        for rows in self._groups(order, lengths[order]):
            width = max(1, int(lengths[rows[-1]]))  # sorted: the last row is the longest
            count = len(rows)
            used = count * width
            ids = self._ids[:used].reshape(count, width)
            mask = self._mask[:used].reshape(count, width)
            types = self._types[:used].reshape(count, width)
            ids.fill(0)  # any valid id will do for padding: the mask hides it
            mask.fill(0)
            types.fill(0)
            for slot, row in enumerate(rows.tolist()):
                encoding = encodings[row]
                n = len(encoding.ids)
                ids[slot, :n] = encoding.ids
                mask[slot, :n] = 1
                types[slot, :n] = encoding.type_ids
            yield TokenBatch(rows=rows, input_ids=ids, attention_mask=mask, token_type_ids=types)

    def _groups(self, order: np.ndarray, sorted_lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Runs of sorted rows: at most `batch_size`, padding within `padding_ratio`.

        A row joins the current batch while the batch, padded to that row's length (the
        longest so far: rows are sorted), stays within `batch_size` rows and holds at most
        `padding_ratio` padding tokens per real token.
        """
        start, total = 0, len(order)
        while start < total:
            end, real = start + 1, int(sorted_lengths[start])
            while end < total and end - start < self.batch_size:
                width = int(sorted_lengths[end])
                if width * (end - start + 1) > (1.0 + self.padding_ratio) * (real + width):
                    break
                real += width
                end += 1
            yield order[start:end]
            start = end

    def token_counts(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation (special tokens included)."""
        encodings = self._tokenizer.encode_batch(list(texts))
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
