"""The README's claims that code can check."""

from __future__ import annotations

from pathlib import Path

from server.config import settings_table

README = Path(__file__).parent.parent / "README.md"


def test_readme_configuration_table_is_current() -> None:
    """The README's configuration table is exactly what the settings declare."""
    assert settings_table().strip() in README.read_text()


def test_readme_starts_with_the_install_and_test_commands() -> None:
    """The README opens with the serve command and the test command, in that order."""
    text = README.read_text()
    serve = text.index("livepilot serve --dev")
    tests = text.index("python -m pytest")
    assert serve < tests < text.index("## A five-minute tour")
