"""Helper of benchmarks/pi/check.sh for the server step: upload one scan to an
`edge-classify serve` running under emulation on 127.0.0.1.

Subcommands (standard library only, run on the host):
  freeport    print a free TCP port on 127.0.0.1
  post        wait for the server's /healthz, upload one scan to /v1/classify and print its
              record as a JSON line, as `edge-classify --json` prints it
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
BOUNDARY = "pi-check-boundary"


class ServeCheckError(Exception):
    """A failed step; the message is printed as one line."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until_up(base: str, wait: float, pid: int | None) -> None:
    deadline = time.monotonic() + wait
    while True:
        if pid is not None and not Path(f"/proc/{pid}").exists():
            raise ServeCheckError(f"the emulated server (pid {pid}) exited before answering")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=10):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServeCheckError(f"the emulated server did not answer {base}/healthz "
                                      f"within {wait:g} s") from None
            time.sleep(1)


def multipart(scan: Path) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{scan.name}\"\r\n\r\n").encode()
    return head + scan.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_scan(port: int, scan: Path, wait: float, pid: int | None = None) -> str:
    """The record of `scan` from the server as a JSON line. A server names an upload by its
    file name only, so `file` is set back to the path as given, as the CLI prints it."""
    base = f"http://{HOST}:{port}"
    wait_until_up(base, wait, pid)
    request = urllib.request.Request(
        base + "/v1/classify", data=multipart(scan), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    try:
        with urllib.request.urlopen(request, timeout=max(wait, 60)) as response:
            records = json.loads(response.read())["records"]
    except urllib.error.HTTPError as error:
        raise ServeCheckError(f"POST /v1/classify: HTTP {error.code}: "
                              f"{error.read()[:300].decode(errors='replace')}") from None
    except (OSError, ValueError, KeyError) as error:
        raise ServeCheckError(f"POST /v1/classify failed: {error}") from None
    if len(records) != 1 or records[0].get("file") != scan.name:
        raise ServeCheckError(f"POST /v1/classify: unexpected records {records!r:.300}")
    return json.dumps({**records[0], "file": str(scan)}, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("freeport", help="a free TCP port on 127.0.0.1")
    post = commands.add_parser("post", help="upload one scan to a local edge-classify serve")
    post.add_argument("port", type=int)
    post.add_argument("scan", type=Path)
    post.add_argument("--wait", type=float, default=300.0, help="seconds to wait for it")
    post.add_argument("--pid", type=int, help="the server's pid: stop waiting if it exits")
    args = parser.parse_args(argv)
    try:
        print(free_port() if args.command == "freeport"
              else post_scan(args.port, args.scan, args.wait, args.pid))
    except ServeCheckError as error:
        print(f"pi-check: FAIL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
