"""The product as users run it: the live web server, the sandbox over HTTP, a real `db_worker`
process on the same database and Debian's Chromium driven by Playwright (sync API).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SandboxControl, require_or_skip, worker_env

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, and this machine's
# closed network refuses it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw"  # tests/conftest.py's operator and viewer


@pytest.fixture(scope="package")
def browser() -> Iterator:
    require_or_skip(Path(CHROMIUM).exists(), f"Debian's Chromium ({CHROMIUM})")
    from playwright.sync_api import Error, sync_playwright

    # Playwright's sync API keeps an asyncio loop marked running on this thread while it is
    # started, and Django then refuses ORM calls as "async unsafe". The loop only runs while a
    # Playwright call is waiting, never during ours, so the guard is off for the browser's life.
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as playwright:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
        except Error as error:
            chromium = None
            reason = str(error).strip().splitlines()[0]
        if chromium is None:
            require_or_skip(False, f"Chromium at {CHROMIUM} ({reason})")
        yield chromium
        chromium.close()


@pytest.fixture
def e2e_settings(settings, sandbox: SandboxControl) -> SandboxControl:
    """The product's own defaults where other tests pin others: Turkish, tasks in the database."""
    settings.LANGUAGE_CODE = "tr"
    # The web request only enqueues; the worker process runs the job (django_tasks resets its
    # backends when TASKS changes).
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return sandbox


@pytest.fixture
def new_page(browser, live_server, e2e_settings) -> Iterator[Callable]:
    """Pages in fresh browser contexts: Turkish staff in Istanbul unless told otherwise."""
    contexts = []

    def make(locale: str = "tr-TR"):
        context = browser.new_context(
            base_url=live_server.url,
            locale=locale,
            timezone_id="Europe/Istanbul",
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page, username: str, password: str = PASSWORD) -> None:
    """Through the real login form, as staff do."""
    page.goto("/")
    page.wait_for_url("**/login/**")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form input[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"the task worker exited:\n{self.tail()}"


@pytest.fixture
def task_worker(transactional_db, e2e_settings: SandboxControl, tmp_path) -> Iterator[Worker]:
    """`manage.py db_worker` in its own process, on the test database, pointed at the sandbox."""
    # Few threads and small chunks, so a job of a few hundred records takes long enough
    # against the sandbox's latency for the progress bar to be seen moving.
    env = worker_env(e2e_settings.url, PAYNET_CONCURRENCY="2", JOBS_CHUNK_SIZE="8")
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                # Without --no-reload the autoreloader forks a child that outlives terminate().
                "--no-reload",
                "--interval",
                "0.1",
                "--no-startup-delay",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log)
    try:
        time.sleep(0.2)
        worker.assert_alive()
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
