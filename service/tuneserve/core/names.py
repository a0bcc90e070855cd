"""What a name or a label may not hold: characters that change how a terminal or a log shows the text around them.

Names (of datasets and models, ids, aliases, columns, backbones) and labels end up in the CLI's tables, in logs and
in reports. A control character there (an ANSI escape sequence, a newline, a carriage return, any other C0 or C1
control, DEL), a Unicode line or paragraph separator, a bidirectional override (the "Trojan Source" trick that shows
text in another order than it is stored) or an unpaired surrogate (not encodable as UTF-8) is refused where the
name or label comes in, rather than escaped at every place it goes out.
"""

from __future__ import annotations

import re
import unicodedata

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def unprintable(value: str) -> str | None:
    """A description of the first character of `value` a name or label may not hold ("U+001B (ESCAPE)"), or None."""
    found = _UNPRINTABLE.search(value)
    if found is None:
        return None
    char = found.group()
    fallback = "an unpaired surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, fallback)
    return f"U+{ord(char):04X} ({name}) at character {found.start()}"


# NOTE: unicodedata has no names for the C0/C1 controls
_CONTROL_NAMES = {"\x1b": "ESCAPE", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB", "\x00": "NUL",
                  "\x7f": "DELETE", "\x9b": "CONTROL SEQUENCE INTRODUCER"}
