"""A self-contained HTML page (figures inlined as base64 PNG): the page builder and the table helpers of
``uncol report``.

The page sets ``document.body.dataset.loaded = "ok"`` once every image has decoded (``"broken"``
otherwise), which the headless-browser test reads.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:24px auto;
padding:0 16px;color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f4f7}td:first-child,th:first-child{text-align:left}tr:nth-child(even) td{background:#fafbfc}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.row{display:flex;flex-wrap:wrap;gap:16px}.note{color:#666;font-size:.9em}code{background:#f4f4f4;padding:1px 4px}
.kv td{text-align:left}.kv td:first-child{font-weight:600;background:#f2f4f7}"""

JS = """window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;
document.body.dataset.images=String(ok);document.body.dataset.loaded=(ok===im.length)?'ok':'broken';});"""


class Page:
    """Collects HTML sections; ``figure`` inlines a PNG already written to disk."""

    def __init__(self, title: str) -> None:
        self.title, self.parts = title, []  # type: ignore[var-annotated]

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str = "") -> None:
        self.parts.append(f"<p{f' class={cls!r}' if cls else ''}>{html.escape(text)}</p>")

    def raw(self, s: str) -> None:
        self.parts.append(s)

    def figure(self, png: Path, caption: str) -> str:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return (f"<figure><img alt={html.escape(caption, quote=True)!r} src=\"data:image/png;base64,{data}\">"
                f"<figcaption>{html.escape(caption)} (<code>{html.escape(png.name)}</code>)</figcaption></figure>")

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n<script>{JS}</script>"
                "</body></html>\n")


def table_html(header: list[str], rows: list[list[Any]], show_header: bool = True) -> str:
    """A plain HTML table of strings (escaped); ``show_header=False`` for a key/value table."""
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    head = f"<thead><tr>{h}</tr></thead>" if show_header else ""
    cls = "" if show_header else " class=\"kv\""
    return f"<table{cls}>{head}<tbody>{body}</tbody></table>"


def markdown_html(md: str) -> str:
    """Markdown tables to HTML tables; headings and other lines as escaped text (enough for results.md)."""
    out, block = [], []  # type: ignore[var-annotated]

    def flush() -> None:
        if block:
            cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in block]
            rows = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append(table_html(cells[0], rows))
            block.clear()

    for line in md.splitlines():
        if line.strip().startswith("|"):
            block.append(line)
            continue
        flush()
        s = line.strip()
        if s.startswith("#"):
            out.append(f"<h3>{html.escape(s.lstrip('#').strip())}</h3>")
        elif s:
            out.append(f"<p>{html.escape(s)}</p>")
    flush()
    return "\n".join(out)
