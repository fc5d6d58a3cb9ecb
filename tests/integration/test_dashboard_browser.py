"""The dashboard in a real headless Chromium (Debian's, driven by Playwright's Python API).

With an API token set and more EVSEs than one page, at 1400 px and at 390 px: the token is
asked for once, tiles are the server's fleet totals, the table is sorted naturally, paged and
searchable on the server, rows show relative times with the exact time on hover, the selected
row is highlighted and stale ones marked, the map draws countries and clusters, the window
history is a chart with time and percentage axes, the pipeline panel shows rates, lag and
dead letters, a live change arrives, panels never overlap, and the console stays clean.
Screenshots go to ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import orjson
import pytest

from streams.broker import free_port
from streams.runner import publish
from streams.simulate import make_log

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
TOKEN = "dash-token"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is required in CI (.ci/apt-packages installs it)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def _log(tmp_path: Path) -> Path:
    entries = make_log(evse_count=130, records=1200, seed=6)
    # one EVSE reported again 40 minutes later: everything it does not cover turns stale
    late = dict(entries[-1])
    late["timestamp"] = entries[-1]["timestamp"] + 40 * 60_000
    entries.append(late)
    entries.append({"source": "ocpi", "timestamp": late["timestamp"], "payload": {"uid": "X", "status": "ASLEEP"}})
    path = tmp_path / "fleet.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    return path


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 1
        and b["x"] < a["x"] + a["width"] - 1
        and a["y"] < b["y"] + b["height"] - 1
        and b["y"] < a["y"] + a["height"] - 1
    )


async def test_the_dashboard_an_operator_keeps_open(broker, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    async with Worker(broker.bootstrap, free_port(), token=TOKEN) as worker:
        report = await publish(broker.bootstrap, [_log(tmp_path)], 3, progress=False)
        await worker.pipeline.wait_processed(report.raw_end_offsets)
        for _ in range(100):  # the view catches up with the output topics
            worker.view.refresh()
            if worker.view.evses and not any(worker.view.lag().values()):
                break
            await asyncio.sleep(0.1)
        summary = worker.view.summary()
        assert summary["evses"] > 50  # more than one page
        errors: list[str] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
                page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
                page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status == 404 else None)
                await page.goto(worker.url + "/")

                # the token is asked for once, then used for everything (stream included)
                await page.wait_for_selector("#tokenDialog[open]", timeout=15000)
                await page.fill("#tokenInput", TOKEN)
                await page.click("#tokenForm button")
                errors.clear()  # the 401s that made the page ask
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 50", timeout=15000)
                await page.wait_for_function("document.querySelector('#conn').textContent === 'live'", timeout=15000)

                # tiles: the server's totals for the whole fleet, saying what they count
                evses_tile = await page.text_content("[data-tile='EVSEs'] b")
                assert int(evses_tile.replace(",", "")) == summary["evses"]
                assert await page.is_visible("[data-tile='connectors available']")

                # the table: natural order, pages, relative times with the exact time on hover
                uids = await page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.uid)")
                ocm = [u for u in uids if u.startswith("edrv:sim-cs-")]
                numbers = [int(u.rsplit("-", 1)[1]) for u in ocm]
                assert numbers == sorted(numbers)  # cs-3 before cs-13
                first_page = uids
                assert "ago" in await page.text_content("#rows tr td[data-field=lastUpdateTimestamp]")
                assert "Z)" in await page.get_attribute("#rows tr td[data-field=lastUpdateTimestamp]", "title")
                await page.click("#next")
                await page.wait_for_function(
                    f"document.querySelector('#rows tr').dataset.uid !== {orjson.dumps(first_page[0]).decode()}"
                )
                assert "page 2 of" in await page.text_content("#pageInfo")
                await page.fill("#f-q", "sim-cs-1")
                await page.wait_for_function(
                    "[...document.querySelectorAll('#rows tr')].every(r => r.dataset.uid.includes('sim-cs-1'))"
                )
                await page.fill("#f-q", "")
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 50")
                assert await page.locator("#rows tr.stale").count() > 0  # stale rows marked

                # selection, details and the window chart with its axes
                target = await page.get_attribute("#rows tr:nth-child(3)", "data-uid")
                await page.click("#rows tr:nth-child(3)")
                await page.wait_for_selector("#rows tr.selected")
                assert await page.get_attribute("#rows tr.selected", "data-uid") == target
                await page.wait_for_function(
                    f"document.querySelector('#detailTitle').textContent === {orjson.dumps(target).decode()}"
                )
                await page.click("#histFleet")
                await page.wait_for_selector("#chart .uplot .u-axis", timeout=10000)
                axes = await page.evaluate("plugstreamChart.axes.map(a => a.label)")
                assert axes == ["window start (your local time)", "% available"]
                assert await page.evaluate("plugstreamChart.scales.x.time") is True
                assert await page.evaluate("plugstreamChart.data[0].length") >= 2

                # the map: countries, clusters, a scale
                assert await page.locator("#mapWorld path.land").count() > 150
                assert await page.locator("#mapPoints circle").count() > 0
                assert "km" in await page.text_content("#scaleText")

                # the pipeline panel: rates per source, lag, dead letters by kind with the latest
                await page.wait_for_function(
                    "document.querySelector('#letters').textContent.includes('unknown_status')", timeout=10000
                )
                assert "ocpp /s" in await page.text_content("#rates")
                assert "lag aggregate" in await page.text_content("#rates")

                # nothing runs under anything else at 1400 px
                boxes = {
                    name: await page.locator(f"#{name}").bounding_box()
                    for name in ("tablePanel", "mapPanel", "detailsPanel", "pipelinePanel")
                }
                for a in boxes:
                    for b in boxes:
                        assert a == b or not _overlap(boxes[a], boxes[b]), (a, b)
                table = await page.locator("#tablePanel").bounding_box()
                stale_header = await page.locator("#tablePanel th:last-child").bounding_box()
                assert stale_header["x"] + stale_header["width"] <= table["x"] + table["width"] + 1

                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-1400.png"), full_page=True)

                # a live change arrives in the visible row
                await page.fill("#f-q", target)
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.wait_for_timeout(500)
                boxes = {
                    name: await page.locator(f"#{name}").bounding_box()
                    for name in ("tablePanel", "mapPanel", "detailsPanel", "pipelinePanel")
                }
                assert (
                    boxes["mapPanel"]["y"] + boxes["mapPanel"]["height"] <= boxes["tablePanel"]["y"] + 1
                )  # map above, not over
                for a in boxes:
                    for b in boxes:
                        assert a == b or not _overlap(boxes[a], boxes[b]), (a, b)
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 392  # the page itself never scrolls sideways; wide tables scroll in their panel
                await page.fill("#f-q", "")
                await page.wait_for_function("document.querySelectorAll('#rows tr').length === 50")
                await page.screenshot(path=str(ARTIFACTS / "dashboard-390.png"), full_page=True)
            finally:
                await browser.close()
        assert errors == [], errors
