"""Reference builds from CSV and NDJSON text or numbers, in chunks, with errors by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.monitor.reference import (
    ReferenceError,
    build_reference,
    reference_version_labels,
)
from service.monitor.reference_sources import SourceError, open_source
from service.monitor.settings import PipelineSettings

pytest.importorskip("tokenizers")

from tests.support.text_model import write_attention_model, write_tokenizer  # noqa: E402

HEADLINES = ["stock market fell", "bank rates rose", "the team won the cup", "goal"]


def _rows(path: Path, **kwargs: Any) -> list[Any]:
    source = open_source(path, chunk_rows=2, **kwargs)
    chunks = list(source.chunks)
    assert all(len(c) <= 2 for c in chunks)
    rows = [r for c in chunks for r in (c.tolist())]
    assert len(rows) == source.total
    return rows


def test_csv_text_column_by_name_or_the_only_column(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    lines = "\n".join(f'{i},"{h}, really",x' for i, h in enumerate(HEADLINES))
    path.write_text("id,headline,other\n" + lines + "\n")
    assert _rows(path, text=True, columns=["headline"]) == [
        f"{h}, really".encode() for h in HEADLINES
    ]
    only = tmp_path / "only.csv"
    only.write_text("headline\n" + "\n".join(HEADLINES) + "\n")
    assert _rows(only, text=True) == [h.encode() for h in HEADLINES]
    with pytest.raises(SourceError, match="3 columns \\(id, headline, other\\); name the text"):
        open_source(path, text=True)
    with pytest.raises(SourceError, match="no column 'title' in the header \\(columns: id, "):
        list(open_source(path, text=True, columns=["title"]).chunks)


def test_csv_numbers_by_columns_or_all(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    assert _rows(path, text=False, columns=["c", "a"]) == [[3.0, 1.0], [6.0, 4.0], [9.0, 7.0]]
    assert _rows(path, text=False) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
    headless = tmp_path / "h.csv"
    headless.write_text("1,2\n3,4\n")
    assert _rows(headless, text=False) == [[1.0, 2.0], [3.0, 4.0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(SourceError, match="bad.csv: line 3: not a number"):
        list(open_source(bad, text=False, columns=["a", "b"]).chunks)


def test_ndjson_text_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "news.ndjson"
    path.write_text(
        "\n".join(json.dumps({"title": h, "n": [i, i + 0.5], "k": i}) for i, h in
                  enumerate(HEADLINES)) + "\n\n"
    )
    assert _rows(path, text=True, columns=["title"]) == [h.encode() for h in HEADLINES]
    assert _rows(path, text=False, columns=["k", "n"])[1] == [1.0, 1.0, 1.5]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("\n".join(json.dumps(h) for h in HEADLINES))
    assert _rows(bare, text=True) == [h.encode() for h in HEADLINES]
    with pytest.raises(SourceError, match="news.ndjson: line 1: a JSON object; name the field"):
        list(open_source(path, text=True).chunks)
    with pytest.raises(SourceError, match="line 1: a text signal needs a string, got int"):
        list(open_source(path, text=True, columns=["k"]).chunks)
    (tmp_path / "broken.ndjson").write_text('"a"\n{"title": \n')
    with pytest.raises(SourceError, match="broken.ndjson: line 2: not JSON"):
        list(open_source(tmp_path / "broken.ndjson", text=True).chunks)


def test_npy_text_and_unsupported_files(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.array(HEADLINES))
    assert _rows(tmp_path / "t.npy", text=True) == [h.encode() for h in HEADLINES]
    with pytest.raises(SourceError, match="--column applies to .csv"):
        open_source(tmp_path / "t.npy", text=True, columns=["x"])
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(SourceError, match="unsupported file type '.txt'; use .csv, .ndjson"):
        open_source(tmp_path / "t.txt", text=True)


def _text_config(tmp_path: Path) -> PipelineSettings:
    model = write_attention_model(tmp_path / "m.onnx")
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json")
    return PipelineSettings.model_validate({"models": {"news": {"signals": [{
        "name": "headline",
        "source": {"embedder": {"path": str(model), "input": "text",
                                "tokenizer": str(tokenizer), "batch_size": 3}},
        "detectors": [{"type": "mmd", "window": 10}],
    }]}}})  # fmt: skip


def test_a_csv_of_text_builds_a_reference_through_the_embedder(tmp_path: Path) -> None:
    """Was: 'non-numeric or ragged CSV (could not convert string to float: ...)'."""
    config = _text_config(tmp_path)
    texts = [HEADLINES[i % 4] + (" the" * (i % 5)) for i in range(2500)]
    path = tmp_path / "news.csv"
    path.write_text("id,headline\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
    ref, stored = build_reference(
        config, "news/headline", path, state_dir=tmp_path, columns=["headline"],
        progress=False,
    )
    assert ref.count == 2500 and ref.dims == 8 and ref.version == ""
    from service.monitor.embedder import OnnxEmbedder

    settings = config.models["news"].signals[0].source.embedder
    assert settings is not None
    expected = OnnxEmbedder(settings).embed(np.array([t.encode() for t in texts], dtype=object))
    np.testing.assert_allclose(ref.data, expected, atol=1e-6)
    assert stored.exists()


def test_text_build_errors_name_the_file(tmp_path: Path) -> None:
    config = _text_config(tmp_path)
    path = tmp_path / "two.csv"
    path.write_text("a,b\nx,y\n")
    with pytest.raises(ReferenceError, match="two.csv: 2 columns \\(a, b\\); name the text"):
        build_reference(config, "news/headline", path, state_dir=tmp_path, progress=False)
    (tmp_path / "empty.csv").write_text("headline\n")
    with pytest.raises(ReferenceError, match="empty.csv: no rows"):
        build_reference(
            config, "news/headline", tmp_path / "empty.csv", state_dir=tmp_path, progress=False
        )


def test_a_reference_is_reported_under_the_versions_of_its_traffic() -> None:
    assert reference_version_labels("", []) == ["unknown"]
    assert reference_version_labels("", ["2", "1", "2"]) == ["1", "2"]
    assert reference_version_labels("1", []) == ["1"]
    assert reference_version_labels("1", ["2"]) == ["2"]


def test_the_cli_builds_from_a_csv_text_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from service.cli import main

    config = _text_config(tmp_path)
    config_path = tmp_path / "outrider.yaml"
    config_path.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "models": config.model_dump(mode="json")["models"],
    }))  # fmt: skip
    source = tmp_path / "news.csv"
    source.write_text("id,headline\n" + "".join(f"{i},{h}\n" for i, h in enumerate(HEADLINES)))
    argv = ["reference", "build", "--config", str(config_path), "--signal", "news/headline",
            "--from", str(source), "--column", "headline", "--version", "3", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("reference news/headline: 4 rows x 8 dims -> ")
    stored = tmp_path / "state" / "references" / "news" / "headline.npz"
    from service.monitor.reference import read_reference

    assert read_reference(stored).version == "3"
    assert main(argv[:-4] + ["nope", "--no-progress"]) == 2
    assert "no column 'nope' in the header (columns: id, headline)" in capsys.readouterr().err
