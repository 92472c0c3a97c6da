"""The help of every command shown in docs/index-and-cli.md is what ``--help`` prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmembed.cli import main

PAGE = Path(__file__).resolve().parent.parent / "docs" / "index-and-cli.md"
BLOCK = re.compile(r"```console\n\$ (mmembed[^\n]*--help)\n(.*?)\n```", re.DOTALL)
SHOWN = {cmd: text for cmd, text in BLOCK.findall(PAGE.read_text())}


def test_the_page_shows_the_help_of_every_command() -> None:
    assert set(SHOWN) == {
        "mmembed --help",
        "mmembed index --help",
        "mmembed search --help",
        "mmembed info --help",
        "mmembed remove --help",
        "mmembed jobs --help",
    }


@pytest.mark.parametrize("command", sorted(SHOWN))
def test_shown_help_matches_the_command(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # the width the page was written at
    with pytest.raises(SystemExit) as stop:
        main(command.split()[1:])
    assert stop.value.code == 0
    assert capsys.readouterr().out.rstrip() == SHOWN[command], (
        f"docs/index-and-cli.md shows another help for `{command}`: paste the new one"
    )
