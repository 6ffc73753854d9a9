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


def test_serve_refuses_the_development_secret_without_dev(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`livepilot serve` will not start on the public dev secret unless --dev is given."""
    monkeypatch.delenv("LIVEPILOT_JWT_SECRET", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    assert "development JWT secret" in capsys.readouterr().err


def test_serve_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag value is reported with the flag's name, and serve exits 2."""
    assert main(["serve", "--dev", "--port", "99999"]) == 2
    assert "--port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "role", "ident"),
    [(["--creator", "cr-1"], "creator", "cr-1"),
     (["--agency", "ag-1", "--staff", "st-1", "--ttl", "60"], "staff", "st-1")],
)
def test_token_mints_a_token_the_server_accepts(
    argv: list[str], role: str, ident: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`livepilot token` prints a token that verifies as the named creator or staff."""
    import time

    from server.auth import AuthKeys, Principal, verify
    from server.config import load_settings

    monkeypatch.delenv("LIVEPILOT_JWT_SECRET", raising=False)
    assert main(["token", *argv]) == 0
    token = capsys.readouterr().out.strip()
    principal = verify(token, AuthKeys.from_settings(load_settings({})),
                       now=time.time_ns() // 1_000_000)
    assert isinstance(principal, Principal)
    assert (principal.actor.role, principal.actor.id) == (role, ident)


def test_token_names_the_configured_audience(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`livepilot token` writes LIVEPILOT_JWT_AUDIENCE as `aud`, and the creator id as `sub`."""
    import jwt

    monkeypatch.setenv("LIVEPILOT_JWT_AUDIENCE", "console.example")
    assert main(["token", "--creator", "cr-1"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert (claims["aud"], claims["sub"]) == ("console.example", "cr-1")


def test_token_for_agency_needs_staff(capsys: pytest.CaptureFixture[str]) -> None:
    """`--agency` without `--staff` is an error."""
    assert main(["token", "--agency", "ag-1"]) == 2
    assert "--staff" in capsys.readouterr().err
