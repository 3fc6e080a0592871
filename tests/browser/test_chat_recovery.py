"""The chat in headless Chromium through ``channels-scale up --workers 2`` and nginx.

Two users in a room; the worker serving the first is killed with SIGKILL while the second keeps
sending; the first reconnects by itself and shows every message exactly once, in order, and the
second sees the first leave and join again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from channels_scale.net import timeout_factor
from channels_scale.stack.health import worker_health
from tests.stackrunner import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
WAIT_MS = 15_000 * timeout_factor()


async def logged_in_room(browser: Any, base: str, user: str, room: str) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/login/")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", user)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    await page.goto(f"{base}/rooms/{room}/")
    await page.wait_for_selector("#chat-state.state-open", timeout=WAIT_MS)
    return page


async def say(page: Any, text: str) -> None:
    """Type and send ``text`` once the page is connected (its input is disabled otherwise)."""
    await page.wait_for_selector("#chat-state.state-open", timeout=WAIT_MS)
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")
    await page.wait_for_function(
        "() => document.getElementById('chat-input').value === ''", timeout=WAIT_MS
    )


async def texts(page: Any) -> list[str]:
    return list(await page.locator("#chat-messages li[data-id] .text").all_inner_texts())


def worker_of_single_connection(stack: RunningStack) -> dict[str, Any]:
    """The worker holding the only open websocket (polled: the count follows the handshake)."""
    deadline = time.monotonic() + 10 * timeout_factor()
    while time.monotonic() < deadline:
        healths = [
            worker_health(stack.run_dir.resolve() / "sockets" / f"worker-{i}.sock") for i in (0, 1)
        ]
        busy = [h for h in healths if h and h["websockets"] == 1]
        if len(busy) == 1 and sum(h["websockets"] for h in healths if h) == 1:
            return busy[0]
        time.sleep(0.05)
    pytest.fail("could not tell which worker serves the first page")


async def test_killed_worker_client_resumes_without_loss_and_presence_follows(
    browser: Any, example_db: dict[str, str], start_stack: Any
) -> None:
    stack: RunningStack = start_stack("--workers", "2", "--lb", "nginx")
    base = f"http://127.0.0.1:{stack.port}"

    first = await logged_in_room(browser, base, "demo", "e2e")
    victim = await asyncio.to_thread(worker_of_single_connection, stack)
    second = await logged_in_room(browser, base, "demo2", "e2e")
    await first.wait_for_selector("#chat-online [data-user=demo2]", timeout=WAIT_MS)
    conn_before = await first.evaluate("() => window.chatSubscription.conn")

    sent = [f"before {i}" for i in range(3)]
    for text in sent:
        await say(second, text)
    await first.wait_for_function(
        "n => document.querySelectorAll('#chat-messages li[data-id]').length >= n",
        arg=len(sent), timeout=WAIT_MS,
    )  # fmt: skip

    os.kill(victim["pid"], signal.SIGKILL)
    during = [f"during {i}" for i in range(8)]
    for text in during:
        await say(second, text)  # the second user keeps talking while the first is cut off
    sent += during

    await first.wait_for_function(
        "last => Array.from(document.querySelectorAll('#chat-messages li .text'))"
        ".some(el => el.textContent === last)",
        arg=sent[-1], timeout=WAIT_MS,
    )  # fmt: skip
    assert await texts(first) == sent, "a message was lost, duplicated or reordered"
    assert await texts(second) == sent
    conn_after = await first.evaluate("() => window.chatSubscription.conn")
    assert conn_after != conn_before, "the first page never reconnected"

    # Presence: the second user saw the first leave and come back, and both are listed.
    await second.wait_for_function(
        "() => { const t = document.getElementById('chat-events').innerText;"
        " const left = t.indexOf('demo left');"
        " return left >= 0 && t.indexOf('demo joined', left) > left; }",
        timeout=WAIT_MS,
    )  # fmt: skip
    online = await second.locator("#chat-online .who-online").all_inner_texts()
    assert sorted(online) == ["demo", "demo2"]
