"""The ``livepilot`` command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.schema import ASYNCAPI_FILE, ERRORS_FILE, SCHEMA_FILE
from server.cli import build_parser, main


def test_schema_writes_the_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot schema --out DIR` writes the three protocol docs and lists them."""
    assert main(["schema", "--out", str(tmp_path)]) == 0
    expected = [tmp_path / relative for relative in (SCHEMA_FILE, ASYNCAPI_FILE, ERRORS_FILE)]
    assert all(path.is_file() and path.stat().st_size > 0 for path in expected)
    assert capsys.readouterr().out.splitlines() == [str(path) for path in expected]


def test_schema_defaults_to_docs_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out, `livepilot schema` writes under ./docs."""
    monkeypatch.chdir(tmp_path)
    assert main(["schema"]) == 0
    assert (tmp_path / "docs" / SCHEMA_FILE).is_file()


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot` alone is a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: livepilot" in capsys.readouterr().err


def test_help_lists_the_subcommands() -> None:
    """The parser's help names every subcommand."""
    assert "schema" in build_parser().format_help()
