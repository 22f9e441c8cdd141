"""Short English texts from Debian's `fortunes` package, by topic, for the text benchmarks.

Each fortune file (computers, food, love, politics, science, sports, ...) is a topic. Its
entries are split into sentences; the attribution lines ("-- Mark Twain") are dropped and
sentences of 3 to 60 words kept: about 28,000 sentences, 17 tokens median with the
MiniLM tokenizer, much like headlines. Nothing is downloaded: `apt-get install fortunes`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class CorpusMissing(RuntimeError):
    """The fortunes files are not installed."""


@functools.lru_cache(maxsize=1)
def fortune_sentences() -> tuple[tuple[str, str], ...]:
    """(topic, sentence) pairs from every fortune file, in file order."""
    if not FORTUNES_DIR.is_dir():
        raise CorpusMissing(f"no {FORTUNES_DIR}: apt-get install fortunes")
    pairs: list[tuple[str, str]] = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if not path.is_file() or "." in path.name:  # skip the .dat indexes and .u8 links
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            body = " ".join(entry.split("\n\t\t--")[0].split("\n\t-- ")[0].split())
            for sentence in _SENTENCE_END.split(body):
                if 3 <= len(sentence.split()) <= 60:
                    pairs.append((path.name, sentence))
    if not pairs:
        raise CorpusMissing(f"{FORTUNES_DIR} holds no fortunes")
    return tuple(pairs)
