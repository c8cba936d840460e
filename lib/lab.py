"""Start JupyterLab on the notebooks: `python -m lib.lab` (what `make lab` runs).

Works where people run it, containers included: as root, Jupyter refuses to start without --allow-root, so
the flag is added when the effective user is root, and a line says so. The server's root is `notebooks/`;
`--port`, `--token` and `--no-browser` pass through (the test starts it on a free port).
"""

from __future__ import annotations

import argparse
import os
import sys

from lib.core import cli, paths


def lab_command(port: int | None = None, token: str | None = None, browser: bool = True) -> list[str]:
    """The jupyter-lab command line for this repository."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={paths.REPO_ROOT / 'notebooks'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # root in a container: Jupyter stops at once without it
    if port is not None:
        cmd += [f"--port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if not browser:
        cmd.append("--no-browser")
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port (default: 8888 or the next free one)")
    parser.add_argument("--token", default=None, help="access token (default: Jupyter generates one and prints it)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args = parser.parse_args(argv)
    cmd = lab_command(args.port, args.token, browser=not args.no_browser)
    if "--allow-root" in cmd:
        print("[lab] running as root: starting Jupyter with --allow-root (it refuses root without it)", file=sys.stderr)
    os.chdir(paths.REPO_ROOT)
    os.execv(cmd[0], cmd)
    return 0  # not reached: the server replaces this process


if __name__ == "__main__":
    sys.exit(cli.run(main))
