"""The one checkpoint-key renamer: ordered regex rules, the first that matches wins."""

from __future__ import annotations

import re


def rename_key(key: str, rules) -> str:
    """`key` rewritten by the first `(pattern, replacement)` of `rules` that matches it (a
    replacement may be a function of the match, as in `re.sub`); unchanged when none does."""
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key
