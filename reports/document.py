"""The document model every page is built as, and its two renderings: Markdown and HTML.

A page is a list of typed blocks (headings, paragraphs, bullets, tables, images) whose text may use
the Markdown we emit (`code`, **bold**). Markdown comes from a Jinja2 template; HTML is that
Markdown converted by the `markdown` library with raw HTML switched off (so text is escaped) and
the PNGs embedded, inside a Jinja2 page template: one model, two formats that cannot drift apart.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

import jinja2
import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MARKDOWN_TEMPLATE = "document.md.j2"
HTML_TEMPLATE = "page.html.j2"
NUMERIC_CELL_CLASS = "n"  # right-aligned, tabular figures (see the page template's CSS)


@dataclasses.dataclass(frozen=True)
class Heading:
    level: int
    text: str
    kind: str = "heading"


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str
    kind: str = "para"


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    kind: str = "bullets"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of display strings; numeric columns are right-aligned in both formats."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()
    kind: str = "table"

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", tuple(str(h) for h in self.header))
        object.__setattr__(self, "rows", tuple(tuple(str(c) for c in r) for r in self.rows))
        object.__setattr__(self, "numeric", tuple(self.numeric) or (False,) * len(self.header))
        if len(self.numeric) != len(self.header) or any(
                len(r) != len(self.header) for r in self.rows):
            raise ValueError(f"table {self.header}: every row and the numeric flags need "
                             f"{len(self.header)} cells")

    def to_markdown(self) -> str:
        """This table alone, as the document template writes it."""
        return Document([self]).to_markdown().strip()


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # a PNG file name, relative to the folder the page is written to
    alt: str
    kind: str = "image"


Block = Heading | Paragraph | Bullets | Table | Image


@dataclasses.dataclass
class Document:
    """An ordered list of blocks; the builders below append, the renderers read."""

    blocks: list[Block] = dataclasses.field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def para(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(Bullets(tuple(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]],
              numeric: Sequence[bool] = ()) -> None:
        self.blocks.append(Table(tuple(header), tuple(tuple(r) for r in rows), tuple(numeric)))

    def add(self, block: Block) -> None:
        self.blocks.append(block)

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(Image(name, alt))

    @property
    def images(self) -> list[str]:
        return [b.name for b in self.blocks if isinstance(b, Image)]

    def to_markdown(self) -> str:
        return to_markdown(self)


def _markdown_cell(text: str) -> str:
    """A table cell on one line, its pipes escaped."""
    return text.replace("|", "\\|").replace("\n", " ")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENVIRONMENT.filters["md_cell"] = _markdown_cell


def to_markdown(doc: Document) -> str:
    """GitHub-flavoured Markdown: blocks separated by a blank line."""
    return _ENVIRONMENT.get_template(MARKDOWN_TEMPLATE).render(blocks=doc.blocks)


class _PageTreeprocessor(Treeprocessor):
    """Marks right-aligned cells with the numeric class and embeds each PNG as a data URI."""

    def __init__(self, md: markdown.Markdown, image_dir: str):
        super().__init__(md)
        self.image_dir = image_dir

    def run(self, root: ElementTree.Element) -> None:
        for cell in root.iter():
            if cell.tag in ("td", "th") and "right" in cell.get("style", ""):
                del cell.attrib["style"]
                cell.set("class", NUMERIC_CELL_CLASS)
            elif cell.tag == "img":
                with open(os.path.join(self.image_dir, cell.get("src", "")), "rb") as f:
                    data = base64.b64encode(f.read()).decode("ascii")
                cell.set("src", f"data:image/png;base64,{data}")


class _SelfContainedPage(Extension):
    """No raw HTML from the text (it is escaped instead), and no external files."""

    def __init__(self, image_dir: str):
        super().__init__()
        self.image_dir = image_dir

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - markdown's API
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_PageTreeprocessor(md, self.image_dir), "self_contained", 0)


def to_html(doc: Document, image_dir: str, title: str) -> str:
    """One self-contained HTML page: the PNG plots are embedded as base64 data URIs."""
    body = markdown.markdown(to_markdown(doc),
                             extensions=["tables", _SelfContainedPage(image_dir)])
    return _ENVIRONMENT.get_template(HTML_TEMPLATE).render(title=title, body=body)
