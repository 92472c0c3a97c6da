"""Docstring clean-up for the API reference (a griffe extension, used by mkdocs.yml only).

The docstrings are written to read well in ``help()`` and to run as doctests: examples are bare
``>>>`` lines and references use Sphinx roles (``:class:`~mmembed.content.Image```). Markdown
knows neither, so before rendering:

- each run of ``>>>`` lines with their output becomes a fenced ``pycon`` block;
- a role naming a public ``mmembed`` object becomes a cross-reference (which
  ``mkdocs build --strict`` checks, so a stale one fails the build); any other role (private
  modules are not in the reference) becomes inline code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    public = not any(part.startswith("_") for part in target.split("."))
    if public and (target.startswith("mmembed.") or target == "mmembed"):
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


def _fence_doctests(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block = []
        # the example and its expected output run until a blank line
        while i < len(lines) and lines[i].strip():
            block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
    return "\n".join(out)


def clean(text: str) -> str:
    """The docstring ``text`` as Markdown for the reference pages."""
    return _ROLE.sub(_role, _fence_doctests(text))


class DocstringsForMarkdown(griffe.Extension):
    """Apply :func:`clean` to every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = clean(obj.docstring.value)
