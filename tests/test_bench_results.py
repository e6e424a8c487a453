"""`make bench`'s convention: bench scripts record rows, the runner prints one table with ratios."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ and scripts/ are folders of scripts, not installed packages
    sys.path.insert(0, str(REPO))

from bench.results import RESULTS_ENV, combined_table, read_rows, record  # noqa: E402
from scripts import bench_all  # noqa: E402


def table_rows(table: str) -> dict[tuple[str, str], list[str]]:
    """(group, measurement) -> its cells, from the Markdown table."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {(row[0], row[1]): row for row in cells}


def test_record_is_a_no_op_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record("g", "a", 1.0, "s")
    assert list(tmp_path.iterdir()) == []


def test_each_row_shows_its_ratio_to_the_baseline_of_its_group(monkeypatch, tmp_path):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(results))
    record("search", "flat", 4.0, "ms", better="lower")
    record("search", "hnsw", 1.0, "ms", "flat", "lower")
    record("search", "ivf", 2.0, "ms", "missing", "lower")
    record("other", "flat", 100.0, "ms")  # same name, other group: not hnsw's baseline
    record("other", "alone", 7.0, "items")
    record("search", "hnsw", 0.5, "ms", "flat", "lower")  # recorded again: the last value counts

    rows = read_rows(results)
    assert [(r.group, r.name, r.value) for r in rows][:2] == [("search", "flat", 4.0), ("search", "hnsw", 1.0)]
    table = table_rows(combined_table(rows))
    assert table["search", "hnsw"][2:] == ["0.5", "ms", "lower", "flat", "0.125x"]
    assert table["search", "flat"][-1] == "(baseline)"
    assert table["search", "ivf"][-1] == "no baseline row"
    assert table["other", "alone"][-1] == "-"
    assert table["other", "flat"][-1] == "-"


def test_better_must_say_which_way(monkeypatch, tmp_path):
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results.jsonl"))
    with pytest.raises(ValueError, match="better"):
        record("g", "a", 1.0, "s", better="faster")


def test_runner_runs_every_script_and_prints_one_table(monkeypatch, tmp_path, capfd):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from bench.results import record
        if __name__ == "__main__":
            record("writes", "per row", 10.0, "rows/s", better="higher")
            record("writes", "batched", 45.0, "rows/s", "per row", "higher")
    """)
    (tmp_path / "writes.py").write_text(script)
    (tmp_path / "helper.py").write_text("VALUE = 1\n")  # no __main__ block: not run
    (tmp_path / "broken.py").write_text('if __name__ == "__main__":\n    raise SystemExit(3)\n')
    monkeypatch.setattr(bench_all, "BENCH_DIR", tmp_path)
    monkeypatch.setattr(bench_all, "REPO", tmp_path)

    assert [p.name for p in bench_all.bench_scripts()] == ["broken.py", "writes.py"]
    assert bench_all.main([]) == 1  # broken.py failed; writes.py still ran
    out = capfd.readouterr().out
    assert "broken.py FAILED (exit 3)" in out
    assert table_rows(out.split("## All benchmarks")[1].split("\n\n")[1])["writes", "batched"][-1] == "4.5x"


def test_the_scale_corpus_is_real_text_dealt_into_quarters_without_repeats():
    from bench.index_scale import corpus_of_size, demo_documents, python_reference_documents, quarters

    documents = demo_documents() + python_reference_documents()
    parts = quarters(documents)
    lengths = [sum(len(d["text"]) for d in part) for part in parts]
    assert max(lengths) < 1.05 * min(lengths) and sum(lengths) > 500_000
    texts = [d["text"] for d in corpus_of_size(parts, 4)]
    assert len(texts) == len(documents) == len(set(texts))  # every document once, none repeated
    one, two = corpus_of_size(parts, 1), corpus_of_size(parts, 2)
    assert one == two[:len(one)] and len(two) < len(texts)  # 1x within 2x within 4x
    assert quarters(documents) == parts  # the same deal every run
