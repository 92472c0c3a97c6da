"""docs/errors.md lists every exit code of the ``mmembed`` command, with the errors behind it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import mmembed.errors as errors_module
from mmembed import _search_cli, cli
from mmembed.cli import ExitCode, _code_for
from mmembed.errors import MMEmbedError

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
_ROW = re.compile(r"^\| (\d+) \| `(\w+)` \| (.*?) \| (.*?) \|$")


def rows() -> dict[int, tuple[str, str]]:
    """code -> (ExitCode name, causes) from the exit-code table of docs/errors.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Exit codes of the `mmembed` command", 1)[1]
    found: dict[int, tuple[str, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            code = int(match.group(1))
            assert code not in found, f"exit code {code} is listed twice"
            found[code] = (match.group(2), match.group(3))
    return found


def error(cls: type[MMEmbedError]) -> MMEmbedError:
    try:
        return cls("x")
    except TypeError:
        return cls("x", estimate_usd=1.0, max_cost_usd=0.0)  # type: ignore[call-arg]


def test_the_doc_lists_exactly_the_exit_codes_of_the_command() -> None:
    table = rows()
    assert {code: name for code, (name, _) in table.items()} == {c.value: c.name for c in ExitCode}


def test_every_error_class_is_under_the_code_the_command_returns_for_it() -> None:
    table = rows()
    for name in errors_module.__all__:
        cls = getattr(errors_module, name)
        if cls is MMEmbedError:
            continue
        listed = [code for code, (_, causes) in table.items() if f"`{name}`" in causes]
        assert listed == [int(_code_for(error(cls)))], f"{name}: listed under {listed}"


def test_every_code_the_sources_return_is_in_the_doc() -> None:
    table = rows()
    used = {ExitCode[m].value for m in re.findall(r"ExitCode\.([A-Z_]+)", inspect.getsource(cli))}
    for node in ast.walk(ast.parse(inspect.getsource(_search_cli))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SearchFailure":
            code = node.args[1]
            assert isinstance(code, ast.Constant)
            used.add(int(code.value))
    assert used == set(table)
