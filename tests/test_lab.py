"""`make lab` starts where people run it (as root in a container too) and serves the notebooks."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request

from lib import lab
from lib.core import paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_allows_root_only_as_root(monkeypatch) -> None:
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    assert "--allow-root" in lab.lab_command()
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in lab.lab_command(port=9999, token="t", browser=False)


def test_lab_serves_the_notebooks_through_its_http_api() -> None:
    port, token = free_port(), secrets.token_hex(8)
    server = subprocess.Popen([*lab.lab_command(port, token, browser=False)], cwd=paths.REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/contents?token={token}"  # the server's root is notebooks/
    try:
        deadline, listing = time.monotonic() + 120, None
        while listing is None:
            assert server.poll() is None, f"jupyter lab exited with status {server.returncode}"
            assert time.monotonic() < deadline, "jupyter lab did not answer within 120 s"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    listing = json.load(response)
            except urllib.error.HTTPError:
                raise  # the server answered, but not with the listing
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        assert {"00_data_statistics.ipynb", "07_teleportation.ipynb"} <= names
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
