"""What the package index shows: the version command, the metadata and README links."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import mmembed
from mmembed.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS_SITE = "https://mmembed.readthedocs.io/"
REPO = "https://github.com/mmembed/mmembed"


def test_version_option_prints_the_metadata_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"mmembed {version('mmembed')}\n"
    assert mmembed.__version__ == version("mmembed")


def test_version_option_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmembed", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.stdout.strip() == f"mmembed {version('mmembed')}"


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_metadata_names_license_urls_and_platforms() -> None:
    project = _project()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a pointer
    urls = project["urls"]
    assert isinstance(urls, dict)
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert urls["Documentation"] == DOCS_SITE
    assert all(u.startswith((REPO, DOCS_SITE)) for u in urls.values())
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Operating System :: MacOS" in classifiers
    # the index locks use flock: Windows is not claimed
    assert not any("Windows" in c or "OS Independent" in c for c in classifiers)
    # a license expression and a License classifier together are refused by the index
    assert not any(c.startswith("License ::") for c in classifiers)


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_links_work_on_the_package_index() -> None:
    """The index renders README.md away from the repository: every link must be absolute, and
    every link into the docs site must name a page that docs/ builds."""
    links = _LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert links, "README.md lost its links"
    relative = [link for link in links if not link.startswith("https://")]
    assert relative == []
    for link in links:
        if link.startswith(DOCS_SITE):
            page = link.removeprefix(DOCS_SITE).removeprefix("en/latest/").split("#")[0]
            page = page.strip("/") or "index"
            built = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / page / "index.md"]
            assert any(p.is_file() for p in built), link
        else:
            assert link.startswith(REPO), link
            if "/blob/main/" in link or "/tree/main/" in link:
                path = re.sub(r"^.*/(?:blob|tree)/main/", "", link).split("#")[0]
                assert (ROOT / path).exists(), link
