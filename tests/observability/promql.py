"""Finding the metric names a PromQL expression reads, without a PromQL parser.

Good enough for the expressions we ship (dashboards, alerts): strings, label matchers, ranges,
grouping clauses and numbers are blanked out, then every identifier not followed by ``(`` and
not a keyword is a metric name.
"""

from __future__ import annotations

import re

_BLANKED = (
    re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''),  # string literals
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # range and subquery selectors
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\boffset\s+\S+"),
    re.compile(r"(?<![A-Za-z0-9_:])[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"),  # numbers
)
_IDENTIFIER = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords and label names excluded)."""
    text = expr
    for pattern in _BLANKED:
        text = pattern.sub(" ", text)
    return {
        match[1]
        for match in _IDENTIFIER.finditer(text)
        if match[2] is None and match[1].lower() not in _KEYWORDS
    }
