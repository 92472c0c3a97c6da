"""Write the current ``--help`` of every command into docs/index-and-cli.md.

Run after changing the command line: ``python tools/cli_help_docs.py``. The page's help
blocks are compared with ``--help`` by tests/test_cli_docs_help.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

from mmembed.cli import main

PAGE = Path(__file__).resolve().parent.parent / "docs" / "index-and-cli.md"
BLOCK = re.compile(r"(```console\n\$ (mmembed[^\n]*--help)\n)(.*?)(\n```)", re.DOTALL)


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(command.split()[1:])
    return out.getvalue().rstrip()


def main_() -> None:
    os.environ["COLUMNS"] = "100"  # the width the page is written at
    text = PAGE.read_text()
    PAGE.write_text(BLOCK.sub(lambda m: m.group(1) + _help(m.group(2)) + m.group(4), text))


if __name__ == "__main__":
    main_()
