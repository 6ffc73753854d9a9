"""The ``livepilot`` command line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from protocol.schema import ASYNCAPI_FILE, ERRORS_FILE, SCHEMA_FILE
from server.cli import build_parser, main


def test_schema_writes_the_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot schema --out DIR --web DIR` writes the three protocol docs and the
    consoles' protocol.js, and lists them."""
    assert main(["schema", "--out", str(tmp_path), "--web", str(tmp_path)]) == 0
    expected = [tmp_path / relative for relative in (SCHEMA_FILE, ASYNCAPI_FILE, ERRORS_FILE)]
    expected.append(tmp_path / "protocol.js")
    assert all(path.is_file() and path.stat().st_size > 0 for path in expected)
    assert capsys.readouterr().out.splitlines() == [str(path) for path in expected]


def test_schema_defaults_to_docs_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out, `livepilot schema` writes under ./docs."""
    monkeypatch.chdir(tmp_path)
    assert main(["schema", "--web", str(tmp_path)]) == 0
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
    [
        (["--creator", "cr-1"], "creator", "cr-1"),
        (["--agency", "ag-1", "--staff", "st-1", "--ttl", "60"], "staff", "st-1"),
    ],
)
def test_token_mints_a_token_the_server_accepts(
    argv: list[str],
    role: str,
    ident: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`livepilot token --dev` prints a token that verifies as the named creator or staff."""
    import time

    from server.auth import AuthKeys, Principal, verify
    from server.config import load_settings

    monkeypatch.delenv("LIVEPILOT_JWT_SECRET", raising=False)
    assert main(["token", "--dev", *argv]) == 0
    token = capsys.readouterr().out.strip()
    principal = verify(
        token, AuthKeys.from_settings(load_settings({})), now=time.time_ns() // 1_000_000
    )
    assert isinstance(principal, Principal)
    assert (principal.actor.role, principal.actor.id) == (role, ident)


def test_token_names_the_configured_audience(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`livepilot token` writes LIVEPILOT_JWT_AUDIENCE as `aud`, and the creator id as `sub`."""
    import jwt

    monkeypatch.setenv("LIVEPILOT_JWT_AUDIENCE", "console.example")
    assert main(["token", "--dev", "--creator", "cr-1"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert (claims["aud"], claims["sub"]) == ("console.example", "cr-1")


def test_token_for_agency_needs_staff(capsys: pytest.CaptureFixture[str]) -> None:
    """`--agency` without `--staff` is an error."""
    assert main(["token", "--agency", "ag-1"]) == 2
    assert "--staff" in capsys.readouterr().err


# --- a first run without tracebacks: one line, exit 2 -------------------------------


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``livepilot argv``: it must exit 2 with one line on stderr; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--creator", "c1", "--staff", "s", "--dev"], None, "--staff goes with --agency"),
        (["--creator", "c1", "--ttl", "-5", "--dev"], None, "--ttl must be a positive"),
        (["--creator", "c1"], "short", "LIVEPILOT_JWT_SECRET: must be at least 32 bytes"),
        (["--creator", "c1"], None, "pass --dev"),
    ],
)
def test_token_mistakes_are_one_line(
    argv: list[str],
    env: str | None,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong token request says what is wrong in one line and exits 2, minting nothing."""
    # H6
    if env is None:
        monkeypatch.delenv("LIVEPILOT_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("LIVEPILOT_JWT_SECRET", env)
    line = one_line_error(["token", *argv], capsys)
    assert line.startswith("livepilot token: ")
    assert says in line


def test_token_without_a_secret_needs_dev_like_serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without LIVEPILOT_JWT_SECRET, `token` refuses the public dev secret unless --dev."""
    # A token a server with a real secret would refuse as forged is never minted silently.
    monkeypatch.delenv("LIVEPILOT_JWT_SECRET", raising=False)
    assert "--dev" in one_line_error(["token", "--creator", "c1"], capsys)
    monkeypatch.setenv("LIVEPILOT_JWT_SECRET", "a-real-secret-of-at-least-32-bytes-long")
    assert main(["token", "--creator", "c1"]) == 0
    assert capsys.readouterr().out.count(".") == 2


def test_serve_on_a_missing_directory_names_the_path_and_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data path in a missing directory is one line naming the path and its setting."""
    # H6
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    line = one_line_error(["serve", "--dev", "--port", "0", "--data-path", str(missing)], capsys)
    assert f"data path {missing} (--data-path)" in line
    assert "does not exist" in line
    monkeypatch.setenv("LIVEPILOT_DATA_PATH", str(missing))
    assert "(LIVEPILOT_DATA_PATH)" in one_line_error(["serve", "--dev", "--port", "0"], capsys)
    assert not (tmp_path / "nonexistent").exists()


def test_serve_on_a_port_in_use_says_so_and_creates_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port already in use is one line, and the data file is never created."""
    # H6
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(
            ["serve", "--dev", "--port", str(port), "--data-path", str(tmp_path / "x.db")], capsys
        )
    assert line == f"livepilot: port {port} on 127.0.0.1 is already in use (--port)"
    assert list(tmp_path.iterdir()) == []  # neither the data file nor its lock


def test_serve_unknown_flag_shows_serve_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped flag of `serve` is reported with serve's usage, and a suggestion."""
    # H6
    with pytest.raises(SystemExit) as info:
        main(["serve", "--prot", "18082"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: livepilot serve ")
    assert err.splitlines()[-1] == (
        "livepilot serve: error: unrecognized arguments: --prot 18082 (did you mean --port?)"
    )


def test_demo_reports_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot demo` with a bad flag says so in one line and exits 2."""
    # H6
    assert "--port" in one_line_error(["demo", "--port", "99999"], capsys)


# --- livepilot check ------------------------------------------------------------------


def make_data_file(path: Path) -> None:
    """A data file as `serve` leaves it: migrated, with a room's events."""
    import anyio

    from server.log.sqlite import SqliteRoomLog
    from tests.log.conftest import pending

    async def fill() -> None:
        log = await SqliteRoomLog.open(path)
        for i in range(200):
            await log.append("room-1", f"c{i}", [pending(f"p{i}")], expected_seq=i)
        await log.close()

    anyio.run(fill)


def test_check_passes_a_sound_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot check` on a sound data file prints ok and exits 0."""
    path = tmp_path / "live.db"
    make_data_file(path)
    assert main(["check", "--data-path", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok (schema ")


def test_check_fails_a_corrupted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`livepilot check` on a file with a damaged page reports it and exits 1."""
    # H4: what was acked is on disk; check says whether the disk still holds it.
    path = tmp_path / "live.db"
    make_data_file(path)
    with path.open("r+b") as f:  # scribble over the middle of the file's pages
        size = f.seek(0, 2)
        f.seek(size // 2)
        f.write(b"\xff" * 8192)
    assert main(["check", "--data", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"livepilot: {path}: NOT OK: ")
    assert "Traceback" not in err


def test_check_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`livepilot check` on no file says so in one line, exits 2 and creates nothing."""
    assert "no such file" in one_line_error(
        ["check", "--data-path", str(tmp_path / "x.db")], capsys
    )
    assert list(tmp_path.iterdir()) == []


def test_check_refuses_a_data_path_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`livepilot check` while the data path is locked names the holder and exits 2."""
    import os

    from server.startup import lock_data_path

    path = tmp_path.resolve() / "live.db"
    make_data_file(path)
    with lock_data_path(str(path)):
        line = one_line_error(["check", "--data-path", str(path)], capsys)
    assert line == (
        f"livepilot: data path {path} is in use by process {os.getpid()} (lock {path}.lock)"
    )
