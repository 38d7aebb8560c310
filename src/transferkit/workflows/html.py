"""Small HTML building blocks for the self-contained report: every text escaped, images inline.

Nothing here emits a script, a stylesheet link, a font or any URL other than ``data:`` image
URIs, so the page opens offline and makes no network request.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ..train.plots import pyplot, tight_layout

__all__ = ["esc", "table", "kv_table", "figure_png", "file_png", "section", "page", "paragraphs", "fmt"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1.05rem}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee}
.warn{background:#fff4e5;border-left:4px solid #f58518;padding:.4rem .8rem;margin:.3rem 0}
.ok{color:#2a7;}.headline{font-size:1.05rem;background:#eef5ff;border-left:4px solid #4c78a8;padding:.5rem .9rem}
pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.8rem}details{margin:.4rem 0}
summary{cursor:pointer;font-weight:600}
"""

# The page may only show inline styles and data: images; a browser then blocks anything else.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    """``html.escape(str(value))`` (quotes too)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: floats to ``digits`` places, ints with separators, None as ``-``.

    Example:
        >>> fmt(0.91234), fmt(1e-5), fmt(12345), fmt(None)
        ('0.9123', '1e-05', '12,345', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        small = value != 0 and abs(value) < 10 ** -(digits - 1)  # learning rates, L2 strengths
        return f"{value:.3g}" if small else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are formatted with :func:`fmt` and escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{esc(fmt(c))}</td>' if i in numeric else f"<td>{esc(fmt(c))}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(data: dict[str, Any]) -> str:
    """Two columns, key and value (nested values as JSON)."""
    return table(["setting", "value"], [(k, v) for k, v in data.items()])


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{esc(alt)}"></p>'


def figure_png(fig: Any, alt: str) -> str:
    """A matplotlib figure as an inline ``<img>`` (PNG data URI); the figure is closed."""
    buf = io.BytesIO()
    tight_layout(fig)
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return _img(buf.getvalue(), alt)


def file_png(path: Path, alt: str) -> str:
    """A PNG file as an inline ``<img>``; empty when the file is missing or not a PNG."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = path.read_bytes()
    return _img(data, alt) if data[:8] == b"\x89PNG\r\n\x1a\n" else ""


def paragraphs(lines: Sequence[str], css: str = "") -> str:
    cls = f' class="{esc(css)}"' if css else ""
    return "".join(f"<p{cls}>{esc(line)}</p>" for line in lines)


def section(title: str, body: str) -> str:
    """``<h2>`` and its (already safe) body; an empty body gives nothing."""
    return f"<section><h2>{esc(title)}</h2>{body}</section>" if body else ""


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """The whole document: inline CSS, a Content-Security-Policy allowing nothing external."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>{''.join(sections)}"
        "<footer><p class=\"sub\">Written by transferkit; self-contained: no scripts, fonts or network requests.</p>"
        "</footer></body></html>\n"
    )
