"""Hypothesis strategies for the fuzz tests: any request message of the API, built from its descriptor (every field,
every type: strings with unicode, huge and empty ones, extreme integers, NaN and infinities, unknown enum values,
random bytes), and dataset files (random bytes, and CSV/JSONL that is nearly right)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

T = FieldDescriptor
_INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1), T.TYPE_SINT32: (-(2**31), 2**31 - 1), T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1), T.TYPE_SINT64: (-(2**63), 2**63 - 1), T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1), T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1), T.TYPE_FIXED64: (0, 2**64 - 1),
}

# NOTE: protobuf strings are UTF-8, so lone surrogates (category Cs) cannot be sent; every other code point can.
UNICODE = st.characters(exclude_categories=("Cs",))
SPECIAL_STRINGS = [
    "", " ", "\x00", "\n", "a" * 256, "a" * 257, "é" * 257, "../../etc/passwd", "/", "/etc", ".", "..", "~", "~root",
    "ds-0000000000000000", "model-0000000000000000", "job-0000000000000000", "latest", "production", "fp32", "int8",
    "text", "label", "x.csv", "x.jsonl", "x.ndjson", "minilm-l6", "org/model", "frozen", "scratch", "macro_f1",
    "top_k", "none", "all", "cosine", "-1", "9" * 40, "1e999", "NaN", "'; DROP TABLE datasets; --", "%s%n%x",
    "\u202e\u0000\ufeff", "🤖" * 10, "Ａ" * 3, "x" * 2000, "/" + "a/" * 200,
]


def names(known: Callable[[], list[str]] | None = None) -> st.SearchStrategy[str]:
    """Strings for name and id fields: special values, unicode, long ones, and (lazily) ids the server knows."""
    options = [st.sampled_from(SPECIAL_STRINGS), st.text(UNICODE, max_size=30)]
    if known is not None:
        options.append(known_ids(known))
    return st.one_of(options)


def known_ids(known: Callable[[], list[str]]) -> st.SearchStrategy[str]:
    # NOTE: drawn as an index and looked up at draw time: the ids exist only once the module's server is seeded
    return st.integers(0, 1000).map(lambda i: _pick(known(), i))


def paths() -> st.SearchStrategy[str]:
    """Path-like strings: traversal, links the system has, odd characters, components too long for the filesystem."""
    return st.one_of(
        st.sampled_from([
            "/", "/etc", "/proc/self/root", "/dev/zero", "..", "../..", "~", "~root", "./", "org/..", "org/.", "a/../..",
            "a" * 256, "/" + "a" * 255, "/tmp", "x\x00y",
        ]),
        st.text(st.sampled_from("/.~a-_\x00é"), max_size=40),
    )


def _pick(values: list[str], index: int) -> str:
    return values[index % len(values)] if values else ""


def texts(max_chars: int) -> st.SearchStrategy[str]:
    """Free text around the text limit (Predict texts)."""
    return st.one_of(
        st.text(UNICODE, max_size=60),
        st.integers(max_chars - 2, max_chars + 2).map(lambda n: "word " * (n // 5) + "w" * (n % 5)),
        st.sampled_from(["", " ", "\x00", "[CLS] [SEP] [PAD] [MASK] [UNK]", "\u200b" * 50, "🤖" * 40]),
    )


def floats(width: int = 64) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=width),  # type: ignore[arg-type]
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, float("nan"), float("inf"), -float("inf")]),
    )


def integers(field_type: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field_type]
    edges = [v for v in (0, 1, -1, 2, 7, 8, 100, 256, 257, 1000, 1001, 2**31 - 1, low, high) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


Overrides = dict[str, st.SearchStrategy[Any]]


def messages(
    message_type: type[Message] | Descriptor, strings: st.SearchStrategy[str], overrides: Overrides | None = None,
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Any message of this type: each field set or not, to any value of its type. `overrides` maps a field's full
    name (`tuneserve.v1.PredictRequest.texts`) to the strategy of its value (a list, for a repeated field)."""
    descriptor = message_type if isinstance(message_type, Descriptor) else message_type.DESCRIPTOR
    cls = GetMessageClass(descriptor)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    overrides = overrides or {}
    for field in descriptor.fields:
        if field.full_name in overrides:
            optional[field.name] = overrides[field.full_name]
            continue
        value = _value(field, strings, overrides, depth)
        if value is not None:
            optional[field.name] = st.lists(value, max_size=4) if field.is_repeated else value
    return st.fixed_dictionaries({}, optional=optional).map(lambda fields: _build(cls, descriptor, fields))


def _value(
    field: FieldDescriptor, strings: st.SearchStrategy[str], overrides: Overrides, depth: int
) -> st.SearchStrategy[Any] | None:
    if field.type == T.TYPE_MESSAGE:
        if depth >= 3 or field.message_type.GetOptions().map_entry:
            return None  # NOTE: no request has a map; deep recursion adds nothing the first levels do not cover
        return messages(field.message_type, strings, overrides, depth + 1)
    if field.type == T.TYPE_STRING:
        return strings
    if field.type == T.TYPE_BYTES:
        return st.binary(max_size=512)
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    if field.type == T.TYPE_DOUBLE:
        return floats()
    if field.type == T.TYPE_FLOAT:
        return floats(32)
    if field.type == T.TYPE_ENUM:
        # NOTE: proto3 enums are open: a value the server's enum does not define still arrives
        defined = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), st.sampled_from([99, -1, 2**31 - 1]))
    return integers(field.type)


def _build(cls: type[Message], descriptor: Descriptor, fields: dict[str, Any]) -> Message:
    message = cls()
    for name, value in fields.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.is_repeated and field.type == T.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        elif field.is_repeated:
            target.extend(value)
        elif field.type == T.TYPE_MESSAGE:
            target.CopyFrom(value)  # NOTE: also selects this member of a oneof, clearing the others
        else:
            setattr(message, name, value)
    return message


# -- dataset files -------------------------------------------------------------------------------------------------

_FIELDS = st.one_of(
    st.text(UNICODE, max_size=20),
    st.sampled_from(["", '"', '""', '"a,b"', "a\nb", "\r", "x" * 300, "\x00", "\ufeff", " label "]),
)
_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(UNICODE, max_size=20)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def csv_bytes() -> st.SearchStrategy[bytes]:
    """A CSV file: a header row (text/label or not), then rows of random fields and field counts."""
    header = st.one_of(st.just(["text", "label"]), st.just(["label", "text", "x"]), st.lists(_FIELDS, max_size=3))
    rows = st.lists(st.lists(_FIELDS, min_size=0, max_size=3), max_size=12)
    return st.tuples(header, rows, st.sampled_from(["\n", "\r\n", "\r"])).map(_csv)


def _csv(parts: tuple[list[str], list[list[str]], str]) -> bytes:
    header, rows, newline = parts
    lines = [",".join(header)] + [",".join(row) for row in rows]
    return newline.join(lines).encode("utf-8", "surrogatepass")


def jsonl_bytes() -> st.SearchStrategy[bytes]:
    """A JSONL file: objects with text/label of any JSON type, other JSON values, broken and pathological lines."""
    row = st.fixed_dictionaries({}, optional={"text": _JSON, "label": _JSON, "other": _JSON}).map(json.dumps)
    odd = st.sampled_from([
        "", "{", "null", "[]", '"text"', '{"text": "a", "label": "b"', "[" * 50_000 + "]" * 50_000,
        '{"text": "a", "label": ' + "9" * 5000 + "}", '{"text": "a", "label": 1e999}', '{"text": "\\ud800", "label": "x"}',
        '{"text": "a", "label": true}', '{"text": "a", "label": 1.5}', '{"text": "a", "label": -0}',
    ])
    lines = st.lists(st.one_of(row, odd, _JSON.map(json.dumps)), max_size=12)
    return lines.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))


_GOOD_LABELS = st.sampled_from(["a", "b", "c", "ü", "0", " a ", "x" * 32, "a,b", 'say "hi"', "🤖"])
_GOOD_TEXTS = st.text(st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=40)
_GOOD_ROWS = st.lists(st.tuples(_GOOD_TEXTS, _GOOD_LABELS), min_size=1, max_size=10)
_BAD_ROW = st.tuples(
    st.one_of(_GOOD_TEXTS, st.integers(199, 202).map(lambda n: "t" * n), st.sampled_from(["\n", " ", "\x00"])),
    st.one_of(_GOOD_LABELS, st.sampled_from(["x" * 33, "", " ", "\n"])),
)
# NOTE: mostly clean rows, so that many files parse; one row may probe a limit
_ROWS = st.one_of(_GOOD_ROWS, st.tuples(_GOOD_ROWS, _BAD_ROW).map(lambda r: [*r[0], r[1]]))


def _csv_rows(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _jsonl_rows(rows: list[tuple[str, str]]) -> bytes:
    return "".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows).encode()


def _damaged(files: st.SearchStrategy[tuple[str, bytes]]) -> st.SearchStrategy[tuple[str, bytes]]:
    """The same files with a BOM in front, or cut inside a multi-byte character."""
    return st.one_of(
        files.map(lambda f: (f[0], b"\xef\xbb\xbf" + f[1])), files.map(lambda f: (f[0], f[1] + b"\xc3"))
    )


@st.composite
def long_lines(draw: st.DrawFn) -> tuple[str, bytes]:
    """(format, content): good rows with one line of 900-1200 bytes among them (around a 1 KiB max_line_bytes),
    a whole row or one field that long, with or without its newline, multi-byte characters cut anywhere."""
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    rows = draw(_GOOD_ROWS)
    size = draw(st.integers(900, 1200))
    fill = draw(st.sampled_from(["a", "é", "🤖", '"', ","]))
    long = (fill * size).encode()[:size]
    line = (b'{"text": "' + long + b'", "label": "a"}') if fmt == "jsonl" and draw(st.booleans()) else long
    content = _csv_rows(rows) if fmt == "csv" else _jsonl_rows(rows)
    lines = content.split(b"\n")
    lines.insert(draw(st.integers(0, len(lines))), line)
    return fmt, b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))


def dataset_files() -> st.SearchStrategy[tuple[str, bytes]]:
    """(format, content): well-formed rows whose values probe the limits (most parse), nearly-right CSV/JSONL,
    lines around the line limit, random bytes, and all of them damaged."""
    good = st.one_of(_ROWS.map(lambda r: ("csv", _csv_rows(r))), _ROWS.map(lambda r: ("jsonl", _jsonl_rows(r))))
    odd = st.one_of(csv_bytes().map(lambda b: ("csv", b)), jsonl_bytes().map(lambda b: ("jsonl", b)))
    raw = st.tuples(st.sampled_from(["csv", "jsonl"]), st.binary(max_size=2048))
    return st.one_of(good, good, odd, long_lines(), raw, _damaged(st.one_of(good, odd)))
