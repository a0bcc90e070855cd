"""What an upload may hold (`ParseLimits`) and the check of one label, shared by every parser."""

from __future__ import annotations

from dataclasses import dataclass

from tuneserve.core.names import unprintable
from tuneserve.errors import InvalidArgument


@dataclass(frozen=True)
class ParseLimits:
    max_rows: int
    max_labels: int
    max_text_chars: int
    max_label_chars: int = 256
    max_image_pixels: int = 25_000_000
    max_bytes: int = 512 * 1024 * 1024      # uncompressed size of a zip's entries, all together
    max_line_bytes: int = 16 * 1024 * 1024  # one line of a CSV or JSONL file


def check_label(label: str, where: str, limits: ParseLimits) -> str:
    """The label stripped of surrounding whitespace; InvalidArgument naming `where` when empty, too long, or holding
    a control character (`core.names`)."""
    label = label.strip()
    if not label:
        raise InvalidArgument(f"{where}: empty label")
    if len(label) > limits.max_label_chars:
        raise InvalidArgument(
            f"{where}: label has {len(label)} characters, more than {limits.max_label_chars} (limit max_name_chars)"
        )
    bad = unprintable(label)
    if bad is not None:
        raise InvalidArgument(f"{where}: label holds {bad}; labels may not hold control characters")
    return label
