"""Headless Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright, and the example's DB."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("chromium is not installed: run ./scripts/install")


@pytest.fixture
def example_db(example_env: dict[str, str]) -> dict[str, str]:
    """Migrate the example's (private) database and create the demo users."""
    for command in (["migrate", "--noinput", "-v", "0"], ["ensure_demo_user"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=EXAMPLE, env=example_env, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
    return example_env


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            await instance.close()
