"""MkDocs hooks for pages written to read well on GitHub too.

GitHub renders ``\\|`` inside a code span in a table cell as a pipe; Python-Markdown keeps the
backslash. Table rows get such code spans as HTML ``<code>`` with the pipe as an entity.
"""

from __future__ import annotations

import html
import re
from typing import Any

_CODE_WITH_PIPE = re.compile(r"`([^`]*\\\|[^`]*)`")


def _code(match: re.Match[str]) -> str:
    text = html.escape(match.group(1).replace("\\|", "|")).replace("|", "&#124;")
    return f"<code>{text}</code>"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("|"):
            lines[i] = _CODE_WITH_PIPE.sub(_code, line)
    return "\n".join(lines)
