"""Alert summary templates as rules declare them (`summary.vi`, `summary.en`).

Templates hold plain named placeholders only: `{source.ip}`, `{value}`. Nothing is
evaluated, so a template from a configuration file cannot reach into objects;
`placeholders` parses them (models.rulecheck checks the names a rule may use), and
the alert stage substitutes with `PLACEHOLDER`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PLACEHOLDER", "placeholders"]

_NAME = r"@?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: A plain placeholder; group 1 is its name (`source.ip`). For substitution:
#: `PLACEHOLDER.sub(lambda m: values[m[1]], text)` once `placeholders(text)` accepted it.
PLACEHOLDER: Final = re.compile(r"\{(" + _NAME + r")\}")
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")


def placeholders(text: str) -> list[str]:
    """The placeholder names of a template, in order of first use, each once.

    Raises ValueError on any brace that is not a plain `{name}`: format specs (`{x:>3}`),
    conversions (`{x!r}`), indexing (`{a[0]}`), empty or unbalanced braces. There is no
    escape for a literal brace: templates are one-line summaries and need none.
    """
    names: list[str] = []
    for match in _BRACES.finditer(text):
        plain = PLACEHOLDER.fullmatch(match[0])
        if plain is None:
            what = "unbalanced brace" if len(match[0]) == 1 else "not a plain placeholder"
            raise ValueError(
                f"{match[0]!r} at character {match.start() + 1}: {what}; write {{name}} with a"
                " field path or label name (no format specs, conversions or indexing)"
            )
        if plain[1] not in names:
            names.append(plain[1])
    return names
