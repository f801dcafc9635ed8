"""Fixtures of the labelling tests: query folders, a server in a subprocess (so it can be killed with
SIGKILL) and headless Chromium (Debian's chromium + chromium-driver) driven by Selenium."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TRINITY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TRINITY_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1100,850",
]


def write_queries(directory: Path, round: int, queries: list[dict]) -> Path:
    """A round_NNNN.queries.jsonl file as FileOracle writes it."""
    path = directory / f"round_{round:04d}.queries.jsonl"
    path.write_text("".join(json.dumps({"round": round, **q}) + "\n" for q in queries), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_server(directory: str, port: int, args: tuple[str, ...]) -> None:
    from trinity_lightning.rounds.web.app import web_main

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child's own stdout, closed at its exit
    os._exit(web_main([directory, "--port", str(port), *args]))


class Server:
    """``trinity label --web DIR`` in a forked child process (the imports are already warm); ``kill9()`` is
    ``kill -9``. ``trinity label --web`` in a fresh interpreter: test_server.py (slow)."""

    def __init__(self, directory: Path, port: int | None = None, *args: str) -> None:
        self.directory, self.port, self.args = directory, port or free_port(), args
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> Server:
        self.proc = multiprocessing.get_context("fork").Process(
            target=_run_server, args=(str(self.directory), self.port, self.args), daemon=True
        )
        self.proc.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.proc.is_alive():
                raise RuntimeError(f"labelling server exited with {self.proc.exitcode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("labelling server did not start in 30 s")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)  # no cleanup at all, exactly like kill -9
            self.proc.join(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)
            if self.proc.is_alive():
                self.kill9()


@pytest.fixture
def serve_dir() -> Iterator[list[Server]]:
    """Start servers with ``Server(...).start()`` and append them here; all are stopped at the end."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.stop()


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install -y chromium chromium-driver"
    return None


def new_browser():  # type: ignore[no-untyped-def]
    """A fresh headless Chromium with its own profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="trinity-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._trinity_profile = profile
    return driver


def close_browser(driver) -> None:  # type: ignore[no-untyped-def]
    driver.quit()
    shutil.rmtree(driver._trinity_profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """One headless Chromium for a test module (skips with the reason when Chromium is unavailable)."""
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    driver = new_browser()
    yield driver
    close_browser(driver)
