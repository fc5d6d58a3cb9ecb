"""The dashboard in a real headless Chromium (Debian's, driven by Playwright's Python API).

Loads the page, sees the table fill, applies a filter, and sees a live update arrive from the
stream. The screenshot is kept in ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import orjson
import pytest

from streams.broker import free_port
from streams.runner import publish

from ..helpers import FIXTURES
from .test_api import Worker

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is required in CI (.ci/apt-packages installs it)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


async def test_dashboard_fills_filters_and_updates_live(broker, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    async with Worker(broker.bootstrap, free_port()) as worker:
        report = await publish(broker.bootstrap, [FIXTURES / "replay_log.jsonl"], 3, progress=False)
        await worker.pipeline.wait_processed(report.raw_end_offsets)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(worker.url + "/")
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 4", timeout=15000)
                assert await page.text_content("[data-status=AVAILABLE] b") == "5"  # 1 + 2 + 1 + 1

                await page.select_option("#f-source", "edrv")
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
                cell = "tr[data-evse='edrv:cs1'] td[data-field=available]"
                assert await page.text_content(cell) == "1"

                live = tmp_path / "live.jsonl"
                live.write_bytes(
                    orjson.dumps(
                        {
                            "source": "edrv",
                            "timestamp": "2026-03-01T10:20:00Z",
                            "payload": {
                                "_id": "c2",
                                "chargestation": "cs1",
                                "status": "Charging",
                                "updatedAt": "2026-03-01T10:20:00Z",
                            },
                        }
                    )
                    + b"\n"
                )
                started = time.monotonic()
                await publish(broker.bootstrap, [live], 3, progress=False)
                await page.wait_for_function(f"document.querySelector(\"{cell}\").textContent === '0'", timeout=10000)
                assert time.monotonic() - started < 10
                assert (
                    await page.text_content("tr[data-evse='edrv:cs1'] td[data-field=lastUpdateTimestamp]")
                    == "2026-03-01T10:20:00.000Z"
                )

                await page.click("tr[data-evse='edrv:cs1']")
                await page.wait_for_selector("#detail #chart")
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                await browser.close()
