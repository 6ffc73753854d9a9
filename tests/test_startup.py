"""What a process claims before it serves: the port, then the data path's lock."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from server.startup import DataPathInUse, StartupError, bind_listener, lock_data_path


def test_a_locked_data_path_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """A second lock on a data path fails with the holder's pid and the lock file."""
    path = tmp_path.resolve() / "live.db"
    with lock_data_path(str(path)) as lock:
        assert Path(lock.lock_path).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataPathInUse) as info:
            lock_data_path(str(path))
    assert info.value.pid == os.getpid()
    assert str(info.value) == (
        f"data path {path} is in use by process {os.getpid()} (lock {path}.lock)"
    )
    assert not path.exists()  # the lock comes before the data file


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    """Once released (as the kernel does when its process dies), the path is free."""
    path = str(tmp_path / "live.db")
    lock_data_path(path).release()
    lock_data_path(path).release()


def test_one_lock_per_file_however_it_is_named(tmp_path: Path) -> None:
    """A symlink or a relative path to a locked file is the same data path."""
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    with lock_data_path(str(tmp_path / "real" / "live.db")), pytest.raises(DataPathInUse):
        lock_data_path(str(tmp_path / "alias" / "live.db"))


def test_an_unusable_data_path_names_the_path_and_the_setting(tmp_path: Path) -> None:
    """A missing directory or a directory as data path is one line with the setting."""
    missing = tmp_path / "no" / "x.db"
    with pytest.raises(StartupError, match="LIVEPILOT_DATA_PATH") as info:
        lock_data_path(str(missing), setting="LIVEPILOT_DATA_PATH")
    assert str(info.value) == (
        f"data path {missing} (LIVEPILOT_DATA_PATH): directory {missing.parent} does not exist"
    )
    with pytest.raises(StartupError, match="is a directory"):
        lock_data_path(str(tmp_path))


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Binding a port another socket listens on says so, naming the setting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as info:
            bind_listener("127.0.0.1", port, setting="LIVEPILOT_PORT")
    assert str(info.value) == f"port {port} on 127.0.0.1 is already in use (LIVEPILOT_PORT)"


def test_a_free_port_is_bound_and_not_yet_listening() -> None:
    """The socket is bound (the port is ours) but connections wait for the server."""
    with bind_listener("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port != 0
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # refused: nobody listens yet
