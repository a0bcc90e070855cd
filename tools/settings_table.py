"""Print the settings reference (a Markdown table) that docs/reference/settings.md carries between its
`<!-- settings-table:start -->` / `<!-- settings-table:end -->` markers; tests/test_docs.py checks it is current.

    python tools/settings_table.py
"""

from __future__ import annotations

from pydantic import BaseModel

from tuneserve.settings import Settings


def rows() -> list[tuple[str, str, str]]:
    out = []
    for section, field in Settings.model_fields.items():
        value = field.get_default(call_default_factory=True)  # the default, whatever the environment says
        if isinstance(value, BaseModel):
            for name, sub in type(value).model_fields.items():
                out.append((f"TUNESERVE_{section.upper()}__{name.upper()}", _show(getattr(value, name)), sub.description or ""))
        else:
            out.append((f"TUNESERVE_{section.upper()}", _show(value), field.description or ""))
    return out


def table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | `{default}` | {' '.join(doc.split())} |" for env, default, doc in rows()]
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]" if value else "[]"
    return str(value)


if __name__ == "__main__":
    print(table())
