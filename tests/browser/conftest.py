"""Headless Chromium (Debian's package) for tests that look at what a person sees."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


class Browser:
    """Runs Debian's chromium headless with the flags this closed network needs."""

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory() as profile:
            cmd = [
                self.exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *args,
            ]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)

    def screenshot(self, page: Path, out: Path, width: int = 1200, height: int = 2400) -> Path:
        proc = self._run(f"--screenshot={out}", f"--window-size={width},{height}", "--hide-scrollbars", page.resolve().as_uri())
        if not out.exists():
            raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}")
        return out

    def dom(self, page: Path) -> str:
        """The DOM after parsing and running whatever the page would run."""
        proc = self._run("--dump-dom", page.resolve().as_uri())
        if proc.returncode != 0:
            raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-800:]}")
        return proc.stdout


@pytest.fixture(scope="session")
def browser() -> Browser:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise RuntimeError("chromium is not installed: `make test` installs it with apt-get (Debian's chromium package)")
    return Browser(exe)
