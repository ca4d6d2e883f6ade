"""多进程服务 ``jingfang serve --workers N``: one SO_REUSEPORT listening socket per worker process.

A real server on 127.0.0.1 (SQLite; the supervisor does not touch the database): N workers each
listen, pages answer, a killed worker is replaced, a second server on the same port is refused
with PORT_IN_USE, and SIGTERM stops every process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.waiting import free_port, process_ended, wait_for

JINGFANG = str(Path(sys.executable).with_name("jingfang"))


def listeners(port: int) -> set[int]:
    """PIDs of the processes listening on 127.0.0.1:port (``ss``)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


@pytest.fixture
def server(tmp_path):
    port = free_port()
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    proc = subprocess.Popen([JINGFANG, "serve", "--workers", "2", "--port", str(port), "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(listeners(port)) == 2, "two listening workers", interval=0.2)
        yield proc, port, db
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_each_worker_listens_on_its_own_socket_and_answers(server):
    proc, port, _ = server
    pids = listeners(port)
    assert len(pids) == 2 and proc.pid not in pids  # two worker processes, not the supervisor
    for _ in range(6):  # fresh connections: every one is answered by some worker
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            response = client.get("/login")
            assert response.status_code == 200 and "登录" in response.text


def test_a_killed_worker_is_replaced(server):
    proc, port, _ = server
    before = listeners(port)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: (lambda p: p if len(p) == 2 and victim not in p else None)(listeners(port)),
                     "a replacement worker", interval=0.2)
    assert len(after & before) == 1 and proc.poll() is None
    assert httpx.get(f"http://127.0.0.1:{port}/login").status_code == 200


def test_a_second_server_on_the_same_port_is_refused(server):
    _, port, db = server
    second = subprocess.run([JINGFANG, "serve", "--workers", "2", "--port", str(port), "--db", db],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "PORT_IN_USE" in second.stderr and "已被占用" in second.stderr


def test_sigterm_stops_every_process(server):
    proc, port, _ = server
    workers = listeners(port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert listeners(port) == set()
    for pid in workers:
        assert process_ended(pid)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
