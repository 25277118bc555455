"""OPS-1: `patron run` serves and runs the worker, and Ctrl-C or SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

PATRON = [sys.executable, "-m", "patron.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(var_dir) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATRON_DEBUG="1",
        PATRON_TESTING="0",
        PATRON_VAR_DIR=str(var_dir),
        PATRON_DATABASE_URL="",
        PATRON_TEST_DATABASE_URL="",
        PATRON_WEB_WORKERS="1",
    )
    return env


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_ops_1_run_serves_and_one_signal_stops_server_and_worker(tmp_path, stop_signal):
    env = _env(tmp_path)
    subprocess.run([*PATRON, "migrate", "--noinput", "-v0"], env=env, check=True, timeout=120)
    port = _free_port()
    proc = subprocess.Popen(
        [*PATRON, "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: we can see whether any child is left
    )
    try:
        seen = set()
        for line in proc.stderr:  # both children log to the stderr they inherit
            if "Listening at" in line:
                seen.add("server")
            if "Starting worker" in line:
                seen.add("worker")
            if seen == {"server", "worker"}:
                break
        assert seen == {"server", "worker"}, "patron run ended before both children started"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the server accepts connections

        proc.send_signal(stop_signal)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no gunicorn, gunicorn worker or task worker outlived it
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
