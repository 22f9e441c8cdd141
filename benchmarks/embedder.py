"""Text embedder: CPU per sampled row as the monitor runs it vs today's padding to 128.

Texts are short English sentences from Debian's `fortunes` (`benchmarks.text_corpus`,
17 tokens median); the model is paraphrase-MiniLM-L3-v2 (ONNX, 384 dims, mean pooling in
its graph) with its tokenizer, from the `text` extra (`examples/text_model.py`).

The monitor embeds, once per worker cycle (0.25 s by default), the rows of every call
sampled in that cycle: about one row per call at a few samples/s, 3 at 10/s, 12 at 50/s
(the default budget). For each of those sizes, two contenders embed the same texts in
calls of that many rows, in alternating rounds, both with one intra-op thread:

- `today`: what the embedder did before: every text padded to max_length (128), one
  onnxruntime run per call (a call of one row is the naive way: one row padded to 128);
- `outrider`: `SignalExtractor.rows_from_tensor` on the call's BYTES tensor, exactly as the
  monitor calls it (texts sorted by length, each batch padded to its longest).

CPU is the process's CPU time (every thread, the tokenizer's included) per row, median
over rounds. The vectors of both are compared (max absolute difference). Then
`outrider reference build` runs as a subprocess on a CSV of 10,000 texts (2,000 with
--quick): its peak RSS, its time, and whether its progress bar reached the end.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import yaml

from benchmarks.harness import Target, alternating_rounds, median, parse_args, report
from benchmarks.text_corpus import fortune_sentences
from examples.text_model import POOLED_OUTPUT, packaged_text_model
from service.monitor.embedder import OnnxEmbedder
from service.monitor.settings import SignalSettings
from service.monitor.signals import SignalExtractor

MAX_LENGTH = 128
ROWS_PER_CALL = {"1_row_per_call": 1, "10_per_s": 3, "50_per_s": 12}


class PaddedToMaxLength:
    """The embedder as it was: every text padded to max_length, one run per call."""

    def __init__(self, model: Path, tokenizer: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_length=MAX_LENGTH)
        self.tokenizer.enable_padding(length=MAX_LENGTH)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def embed(self, tensor: np.ndarray) -> np.ndarray:
        texts = [item.decode("utf-8") for item in tensor.reshape(tensor.shape[0], -1)[:, 0]]
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (out,) = self.session.run([POOLED_OUTPUT], feeds)
        return np.asarray(out, dtype=np.float64)


def _signal(model: Path, tokenizer: Path) -> SignalSettings:
    return SignalSettings.model_validate({
        "name": "headline",
        "source": {"embedder": {"path": str(model), "input": "text", "output": POOLED_OUTPUT,
                                "tokenizer": str(tokenizer), "max_length": MAX_LENGTH}},
        "detectors": [{"type": "mmd", "window": 100}],
    })  # fmt: skip


def _calls(texts: list[str], rows: int) -> list[np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    calls = []
    for start in range(0, len(encoded), rows):
        call = np.empty((len(encoded[start : start + rows]), 1), dtype=object)
        call[:, 0] = encoded[start : start + rows]
        calls.append(call)
    return calls


def _cpu_per_row(embed: Callable[[np.ndarray], np.ndarray], calls: list[np.ndarray]) -> float:
    rows = sum(c.shape[0] for c in calls)
    start = time.process_time()
    for call in calls:
        embed(call)
    return (time.process_time() - start) / rows


def _reference_build(
    model: Path, tokenizer: Path, texts: list[str], work: Path
) -> dict[str, Any]:
    """`outrider reference build` from a CSV text column, in a subprocess: RSS, time, bar."""
    source = work / "texts.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    config = work / "outrider.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(work / "state"),
        "models": {"news": {"signals": [_signal(model, tokenizer).model_dump(mode="json")]}},
    }))  # fmt: skip
    command = [sys.executable, "-m", "service.cli", "reference", "build", "--config",
               str(config), "--signal", "news/headline", "--from", str(source),
               "--column", "text"]  # fmt: skip
    out, err = work / "build.out", work / "build.err"
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    bar = err.read_text(errors="replace")
    done = f"{len(texts)}/{len(texts)} rows"
    return {
        "texts": len(texts),
        "exit_code": process.returncode,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "seconds": seconds,
        "rows_per_second": len(texts) / seconds,
        "progress_bar_reached_end": done in bar,
        "stdout": out.read_text().strip(),
        "stderr_tail": bar.strip().splitlines()[-1:] if bar.strip() else [],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    quick = bool(args.quick)
    rounds = args.rounds or (3 if quick else 7)
    model, tokenizer = packaged_text_model()
    pairs = fortune_sentences()
    rng = np.random.default_rng(0)
    picked = rng.permutation(len(pairs))
    sample = [pairs[i][1] for i in picked[: 120 if quick else 600]]
    build_texts = [pairs[i][1] for i in picked[: 2000 if quick else 10000]]

    ours = SignalExtractor("news", _signal(model, tokenizer), embedder=OnnxEmbedder(
        _signal(model, tokenizer).source.embedder  # type: ignore[arg-type]
    ))
    today = PaddedToMaxLength(model, tokenizer)
    assert ours.embedder is not None
    tokens = ours.embedder.token_counts(sample)
    print(f"{len(sample)} texts: tokens median {statistics.median(tokens.tolist()):g}, "
          f"p90 {np.percentile(tokens, 90):g}, max {tokens.max()}; {rounds} rounds")  # fmt: skip

    results: dict[str, Any] = {
        "texts": len(sample),
        "tokens": {"median": float(np.median(tokens)), "p90": float(np.percentile(tokens, 90)),
                   "max": int(tokens.max())},
        "rounds": rounds,
        "machine_note": "shared 2-core machine; medians of alternating rounds",
    }  # fmt: skip
    targets: list[Target] = []
    for name, rows in ROWS_PER_CALL.items():
        calls = _calls(sample, rows)
        measured = alternating_rounds({
            "today": lambda calls=calls: _cpu_per_row(today.embed, calls),
            "outrider": lambda calls=calls: _cpu_per_row(ours.rows_from_tensor, calls),
        }, rounds)  # fmt: skip
        today_ms = median(measured["today"]) * 1e3
        ours_ms = median(measured["outrider"]) * 1e3
        ratios = [o / t for o, t in zip(measured["outrider"], measured["today"], strict=True)]
        ratio = median(ratios)
        results[name] = {"rows_per_call": rows, "today_cpu_ms_per_row": today_ms,
                         "outrider_cpu_ms_per_row": ours_ms, "ratio_median": ratio,
                         "ratio_per_round": ratios}  # fmt: skip
        print(f"{name:15s} ({rows:2d} rows/call): today {today_ms:6.2f} ms/row, "
              f"outrider {ours_ms:6.2f} ms/row, ratio {ratio:.3f}")  # fmt: skip
        targets.append(Target(f"cpu_per_row_ratio_{name}", ratio, 0.25, "<="))

    naive = np.concatenate([today.embed(c) for c in _calls(sample, 1)])
    diffs = {
        name: float(np.abs(np.concatenate(
            [ours.rows_from_tensor(c) for c in _calls(sample, rows)]) - naive).max())
        for name, rows in {**ROWS_PER_CALL, "all_in_one_call": len(sample)}.items()
    }  # fmt: skip
    results["max_abs_diff_vs_padded_to_128"] = diffs
    print(f"max |outrider - padded to 128|: {max(diffs.values()):.2e}")
    targets.append(Target("max_abs_diff_vs_padded_to_128", max(diffs.values()), 1e-5, "<="))

    with tempfile.TemporaryDirectory(prefix="bench-embedder-") as work:
        build = _reference_build(model, tokenizer, build_texts, Path(work))
    results["reference_build"] = build
    print(f"reference build of {build['texts']} texts: exit {build['exit_code']}, peak RSS "
          f"{build['peak_rss_mb']:.0f} MB, {build['seconds']:.1f} s "
          f"({build['rows_per_second']:.0f} rows/s), bar: {build['stderr_tail']}")  # fmt: skip
    targets.append(Target(f"reference_build_{build['texts']}_texts_peak_rss_mb",
                          build["peak_rss_mb"], 500.0, "<="))  # fmt: skip
    targets.append(Target("reference_build_progress_bar_reached_end",
                          float(build["progress_bar_reached_end"] and build["exit_code"] == 0),
                          1.0, ">="))  # fmt: skip
    return report("embedder", results, targets, args.json, quick=quick)


if __name__ == "__main__":
    sys.exit(main())
