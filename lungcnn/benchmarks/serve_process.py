"""`edge-classify serve` in a subprocess on 127.0.0.1 and a free port, for the load
benchmark and the browser test: started, waited for (GET /healthz), stopped with SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"  # never anything but loopback
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`with ServerProcess(["--workers", "1"]) as server: server.url`"""

    def __init__(self, serve_args: list[str] | tuple[str, ...] = (), *,
                 ready_timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._args = [sys.executable, "-m", "lungcnn.edge", "serve", "--host", HOST,
                      "--port", str(self.port), *serve_args]
        self._ready_timeout = ready_timeout
        self._log = tempfile.TemporaryFile()
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __enter__(self) -> "ServerProcess":
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen(self._args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=environment)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # it answers (401 with a token)
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server not ready within {self._ready_timeout:g} s: {self.log()}")

    def peak_rss_bytes(self) -> int | None:
        """The server's peak resident memory so far (Linux VmHWM), None if unknown."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]
