"""The document model and its two renderings: the same figures in Markdown and HTML, escaped."""
from __future__ import annotations

import re

import pytest

from reports import document, tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_documents_render_as_markdown_and_escaped_html(tmp_path):
    doc = document.Document()
    doc.heading(2, "Blessing")
    doc.para("Verdict: **BLESSED** at `a<b>`")
    doc.table(["Class", "F1"], [["cat|dog", "0.5"]], numeric=[False, True])
    (tmp_path / "x.png").write_bytes(PNG_MAGIC + b"rest")
    doc.image("x.png", "plot")
    markdown = document.to_markdown(doc)
    assert "## Blessing" in markdown and "| cat\\|dog | 0.5 |" in markdown
    assert "![plot](x.png)" in markdown
    page = document.to_html(doc, str(tmp_path), "t")
    assert "<strong>BLESSED</strong>" in page and "<code>a&lt;b&gt;</code>" in page
    assert '<td class="n">0.5</td>' in page
    assert 'src="data:image/png;base64,' in page


def _per_class_rows() -> list[dict]:
    return [{"class": "cat", "precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4},
            {"class": "dog", "precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3}]


def test_markdown_and_html_of_one_document_hold_the_same_figures(tmp_path):
    doc = document.Document()
    doc.heading(1, "Run `r1`")
    doc.bullets(["Started 2026-01-01", "Version **7**"])
    doc.add(tables.per_class_table(_per_class_rows()))
    markdown = document.to_markdown(doc)
    page = document.to_html(doc, str(tmp_path), "Run r1")
    cells = re.findall(r"\| ([^|\n]+?) (?=\|)", markdown)
    assert {"0.500", "0.250", "0.333", "0.857", "0.625", "0.595", "7"} <= set(cells)
    for figure in ("0.500", "0.250", "0.333", "0.750", "1.000", "0.857", "0.625", "0.625",
                   "0.595"):
        assert f'<td class="n">{figure}</td>' in page, figure
    assert "<strong>macro avg</strong>" in page and "**macro avg**" in markdown
    assert "<li>Version <strong>7</strong></li>" in page and "- Version **7**" in markdown
    assert "<h1>Run <code>r1</code></h1>" in page and "# Run `r1`" in markdown


def test_html_escapes_text_and_title_and_never_passes_raw_html(tmp_path):
    doc = document.Document()
    doc.para('a <script>alert("x")</script> & <b>b</b>')
    doc.table(["Path"], [["<img src=x onerror=y>"]])
    page = document.to_html(doc, str(tmp_path), "<title> & co")
    assert "<script" not in page and "<b>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&amp;" in page
    assert "<title>&lt;title&gt; &amp; co</title>" in page


def test_a_missing_image_file_is_an_error_naming_it(tmp_path):
    doc = document.Document()
    doc.image("absent.png", "plot")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        document.to_html(doc, str(tmp_path), "t")


def test_tables_refuse_rows_of_the_wrong_width():
    with pytest.raises(ValueError, match="need 2 cells"):
        document.Table(("a", "b"), (("1",),))
