"""The report's HTML building blocks: escaped text, tables, `key: value` fields, sections, embedded pictures and
notes. Every string from the server goes through `e` (labels are user data)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def num(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{e(c)}</td>' if i >= numeric_from else f"<td>{e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fields(rows: Iterable[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>"


def section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{e(title)}</h2>{"".join(parts)}</section>'


def image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img alt="{e(alt)}" src="data:image/png;base64,{data}"></p>'


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'
