"""The browser page of ``ntm serve`` (``GET /``), tested in a real headless Chromium.

A person opens the page, makes a copy, recall or repeat-copy request, presses Run, and reads the
answer (wrong bits marked) and the attention over time. These tests do the same through
Playwright against a real ``ntm serve`` process, read the rendered answer back from the page and
check it against the true answer of the request the page sent, and fail on any JavaScript error
in the console. They also check the page's size, its first paint, the API key and a path prefix.

Chromium comes from the Debian package (``apt-get install chromium``; ``.ci/run`` installs it).
Without it, or without Playwright, the browser tests skip, except under CI (``CI=true``) where
they fail. ``python tests/serving/test_page.py --screenshot PATH`` takes the README's picture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.serving.conftest import ServerProcess, wait_until  # noqa: E402

KEY = "page-test-key"
PREFIX = "/ntm"
WAIT_MS = 60_000  # CI shares a slow 2-core machine: wait on what the page shows, generously
PAGE_BUDGET_BYTES = 200 * 1024
FIRST_PAINT_BUDGET_MS = 1000
OUTPUT = "[data-testid=output]"


# -- servers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    process = ServerProcess([])
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def keyed_server():
    process = ServerProcess(["--api-key", KEY])
    yield process
    assert process.stop() == 0


class PrefixProxy:
    """A reverse proxy on loopback that serves ``upstream`` under ``PREFIX/`` and strips the
    prefix, as ``location /ntm/ { proxy_pass http://upstream/; }`` does in nginx. Requests
    outside the prefix are answered 404 and recorded in ``misses``."""

    def __init__(self, upstream: str):
        import uvicorn

        self.upstream = upstream
        self.misses: list[str] = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # Plain asyncio: uvloop's policy must not leak into Playwright's loop in this process.
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                    lifespan="off", loop="asyncio",
                                                    interface="asgi3"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, "the proxy to start")

    async def app(self, scope, receive, send):
        path = scope["path"]
        if not path.startswith(PREFIX + "/"):
            self.misses.append(path)
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"outside the prefix"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = scope["query_string"].decode()
        target = self.upstream + path[len(PREFIX):] + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"host"]
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.request(scope["method"], target, headers=headers,
                                             content=body)
        skip = {b"content-length", b"transfer-encoding", b"connection", b"content-encoding"}
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
        out.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": out})
        await send({"type": "http.response.body", "body": response.content})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# -- the browser -----------------------------------------------------------------------------
def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    in_ci = os.environ.get("CI") == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("Playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        if in_ci:
            pytest.fail("Chromium is not installed under CI: .ci/run must install it "
                        "(apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium): browser tests "
                    "skipped")
    # Playwright cannot download its own browsers here: drive Debian's Chromium.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


class Visit:
    """One browser page on ``url``, with every console error and uncaught exception kept."""

    def __init__(self, browser, url: str, width: int = 1200, height: int = 900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.goto(url)

    def wait_for_models(self) -> None:
        self.page.wait_for_selector("[data-testid=model]:enabled")

    def run(self) -> dict:
        """Press Run and wait for the answer; returns the request body the page sent."""
        page = self.page
        runs = int(page.get_attribute("#result", "data-runs"))
        with page.expect_request(lambda r: r.url.endswith(":predict")) as sent:
            page.click("[data-testid=run]")
        page.wait_for_selector(f"#result[data-runs='{runs + 1}']")
        self.sent = sent.value
        instances = sent.value.post_data_json["instances"]
        assert len(instances) == 1 and instances[0]["return_attention"] is True
        return instances[0]

    def set_number(self, selector: str, value: int) -> None:
        self.page.fill(selector, str(value))
        self.page.press(selector, "Enter")

    def output_vectors(self) -> list[list[int]]:
        """The answer's bit grid as the page renders it, back as vectors [time][channel]."""
        text = self.page.locator(f"{OUTPUT} pre").first.inner_text()
        rows = [line.split()[1] for line in text.splitlines() if line.strip()]
        assert len({len(r) for r in rows}) == 1 and set("".join(rows)) <= {"#", "."}, text
        return [[int(row[t] == "#") for row in rows] for t in range(len(rows[0]))]

    def verdict(self) -> str:
        return self.page.inner_text("#verdict")

    def dark_pixels(self) -> int:
        """Pixels of the attention canvas darker than mid-grey (the heatmaps were drawn)."""
        return self.page.evaluate("""() => {
            const c = document.querySelector('[data-testid=attention]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let dark = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 128) dark++;
            return dark;
        }""")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser):
    opened: list[Visit] = []

    def open_page(url: str, **size) -> Visit:
        v = Visit(browser, url, **size)
        opened.append(v)
        return v

    yield open_page
    for v in opened:
        v.close()


def truth(task: str, request: dict) -> list[list[int]]:
    """The answer a perfect model gives to ``request``, computed here, not by the page."""
    if task == "recall":
        first = request["items"].index(request["query"])
        return request["items"][first + 1]
    if task == "repeat-copy":
        return request["sequence"] * request["repeats"]
    return request["sequence"]


# -- the page as files -----------------------------------------------------------------------
def page_urls(base: str) -> tuple[str, list[str]]:
    """The HTML of the page and the URLs it loads (src and href, data: URLs aside)."""
    html = httpx.get(base + "/", timeout=30).text
    urls = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html) if not u.startswith("data:")]
    return html, urls


def test_page_and_its_assets_are_small_and_need_no_key(keyed_server):
    url = keyed_server.url
    html, assets = page_urls(url)
    assert sorted(assets) == ["page/app.css", "page/app.js"]
    total = len(html.encode())
    for asset in assets:
        r = httpx.get(f"{url}/{asset}", timeout=30)
        assert r.status_code == 200, asset
        assert "set-cookie" not in r.headers
        total += len(r.content)
    assert total < PAGE_BUDGET_BYTES, f"page and assets: {total} bytes"
    page = httpx.get(url + "/", timeout=30)
    assert page.headers["content-type"].startswith("text/html") and \
        "set-cookie" not in page.headers
    # The page is public; what it shows is not: the listing and the cards need the key.
    for path in ("/v1/models", "/page/cards.json", "/v1/models/copy:predict"):
        assert httpx.get(url + path, timeout=30).status_code == 401, path
    listing = httpx.get(url + "/page/cards.json", headers={"X-API-Key": KEY}, timeout=30)
    assert listing.status_code == 200
    card = listing.json()["models"]["copy"]["card"]
    assert card["train_lengths"] == [1, 20] and card["evaluation"]


def test_every_url_in_the_page_is_relative(server):
    """Under a path prefix the page must load its assets and call the API below that prefix:
    no URL may start at the server's root."""
    html, assets = page_urls(server.url)
    script = httpx.get(f"{server.url}/page/app.js", timeout=30).text
    for u in assets:
        assert not re.match(r"(/|[a-z]+:)", u), f"absolute URL in the page: {u}"
    calls = re.findall(r"""(?:api|fetch)\(\s*[`"']([^`"']+)""", script)
    assert set(calls) >= {"v1/models", "page/cards.json"}, calls
    for u in calls:
        assert not re.match(r"(/|[a-z]+:)", u), f"absolute URL in app.js: {u}"
    assert not re.search(r"""[`"'](?:https?:)?/(?:v1|v2|page|metrics)\b""", script)
    assert "v1/models/${encodeURIComponent(model.name)}:predict" in script


def test_page_routes_stay_out_of_the_api_schema(server):
    paths = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"]
    assert not any(p == "/" or p.startswith("/page") for p in paths)


# -- in the browser --------------------------------------------------------------------------
def test_a_new_user_opens_the_page_and_presses_run(server, visit):
    v = visit(server.url + "/")
    v.wait_for_models()
    assert v.page.input_value("[data-testid=model]") == "copy"
    from ntm.serving.models import bundled_models, model_card

    rows = v.page.locator("#models tbody tr")
    assert rows.count() == len(bundled_models())
    table = v.page.inner_text("#models")
    assert "length 1–20" in table and "items 2–6" in table and "repeats 1–10" in table
    assert "priority-sort\tpriority-sort\tvectors 20\t" in table  # one count, not 20–20

    at_1000 = next(r for r in model_card("copy")["evaluation"] if r["length"] == 1000)
    shown = f"{round(at_1000['mean_bits'], 2):g}"  # as the page rounds: 3.5996 -> 3.6
    seen = f"{round(model_card('copy')['sequences_seen'] / 1000)}k sequences"
    assert seen in table and f"1000: {shown} (1024 rows)" in table  # the copy card
    request = v.run()
    assert 1 <= len(request["sequence"]) <= 20
    assert v.output_vectors() == truth("copy", request)
    verdict = v.verdict()
    assert "Right: the output equals the true answer" in verdict
    assert "Within the training range (length 1–20)" in verdict
    assert "128 memory rows" in verdict
    assert v.dark_pixels() > 500
    assert v.errors == []


def test_copy_made_by_clicking_bits(server, visit):
    v = visit(server.url + "/")
    v.wait_for_models()
    v.set_number("#length", 4)
    v.page.click("#clear")
    wanted = [[1, 0, 0, 0, 0, 0, 0, 1], [0, 1, 1, 0, 0, 0, 0, 0],
              [0, 0, 0, 1, 0, 1, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]]
    editor = "[data-testid=input]"
    cell = float(v.page.get_attribute(editor, "data-cell"))
    top = float(v.page.get_attribute(editor, "data-top"))
    for t, vector in enumerate(wanted):
        for c, bit in enumerate(vector):
            if bit:
                v.page.click(editor, position={"x": (t + 0.5) * cell, "y": top + (c + 0.5) * cell})
    request = v.run()
    assert request["sequence"] == wanted
    assert v.output_vectors() == wanted
    assert "Right:" in v.verdict()
    assert v.errors == []


def test_recall_with_a_chosen_query(server, visit):
    v = visit(server.url + "/")
    v.wait_for_models()
    v.page.select_option("[data-testid=model]", "recall")
    v.set_number("#items", 6)
    v.page.select_option("#query", "3")  # the 4th item: the answer is the 5th
    v.page.click("#random")
    request = v.run()
    assert len(request["items"]) == 6 and request["query"] == request["items"][3]
    assert v.output_vectors() == truth("recall", request) == request["items"][4]
    assert "Right:" in v.verdict() and "Within the training range (items 2–6)" in v.verdict()
    assert "the item after item 4" in v.page.inner_text(OUTPUT)
    assert v.dark_pixels() > 200
    assert v.errors == []


def test_repeat_copy(server, visit):
    v = visit(server.url + "/")
    v.wait_for_models()
    v.page.select_option("[data-testid=model]", "repeat-copy")
    v.set_number("#repeats", 2)
    v.set_number("#length", 3)
    request = v.run()
    assert request["repeats"] == 2 and len(request["sequence"]) == 3
    assert v.output_vectors() == truth("repeat-copy", request)
    assert "Right:" in v.verdict() and "End marker" in v.page.inner_text(OUTPUT)
    assert v.errors == []


@pytest.fixture(scope="module")
def baseline_server(baseline_exports):
    process = ServerProcess(["--model", "copy",
                             "--model", f"copy-lstm={baseline_exports['dynamic']}"])
    yield process
    assert process.stop() == 0


def test_a_baseline_shows_its_answer_and_no_memory(baseline_server, visit):
    """A model without memory (the LSTM baseline): its answer, its inputs and outputs over time,
    no memory panels; and the NTM beside it still draws its attention."""
    v = visit(baseline_server.url + "/")
    v.wait_for_models()
    assert "none (LSTM baseline)" in v.page.inner_text("#models")
    v.page.select_option("[data-testid=model]", "copy-lstm")
    assert "the memory grows" not in v.page.inner_text("#range")
    request = v.run()
    assert len(v.output_vectors()) == len(request["sequence"])
    assert "No memory (an LSTM baseline)" in v.verdict()
    assert v.page.inner_text("#picture-title").startswith("Inputs and outputs over time")
    assert v.page.is_hidden("#memory-note") and v.dark_pixels() > 0  # the inputs' bits
    v.page.select_option("[data-testid=model]", "copy")
    v.run()
    assert v.page.inner_text("#picture-title") == "Attention over time"
    assert v.page.is_visible("#memory-note") and "128 memory rows" in v.verdict()
    assert v.errors == []


@pytest.mark.slow
def test_a_length_500_copy_runs_with_grown_memory(server, visit):
    v = visit(server.url + "/")
    v.wait_for_models()
    v.set_number("#length", 500)
    request = v.run()
    assert len(request["sequence"]) == 500
    assert v.output_vectors() == request["sequence"]
    verdict = v.verdict()
    assert "Right:" in verdict and "Extrapolated: beyond the training range" in verdict
    assert "512 memory rows" in verdict
    # 1001 steps x 512 rows per head drawn on a canvas a few hundred pixels wide
    assert v.dark_pixels() > 2000
    assert v.errors == []


def test_memory_window_is_the_one_ntm_plot_draws(server, visit):
    """The page's port of ``ntm.cli.figures.memory_window`` picks the same rows, wrapping included."""
    from ntm.cli.figures import memory_window

    v = visit(server.url + "/")
    v.wait_for_models()
    rng = np.random.default_rng(0)
    n = 128
    cases = []
    for start, span in ((3, 10), (120, 15), (0, 128), (60, 0)):
        weights = np.zeros((2, 7, n))
        weights[:, :, :] = rng.uniform(0, 0.01, (2, 7, n))
        for i in range(span):
            weights[i % 2, i % 7, (start + i) % n] = 0.9
        cases.append(weights)
    for weights in cases:
        mine = v.page.evaluate("([heads, n]) => memoryWindow(heads, n)", [weights.tolist(), n])
        assert mine == memory_window(weights).tolist()
    assert v.errors == []


def test_first_paint_is_under_a_second(server, visit):
    v = visit(server.url + "/")
    v.page.wait_for_load_state("load")
    paint = wait_until(lambda: v.page.evaluate(
        "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"),
        "the first contentful paint")
    print(f"first contentful paint: {paint:.0f} ms")
    assert paint < FIRST_PAINT_BUDGET_MS
    v.wait_for_models()
    assert v.errors == []


def test_api_key_typed_into_the_page(keyed_server, visit):
    v = visit(keyed_server.url + "/")
    v.page.wait_for_selector("#key-form:visible")
    assert "API key" in v.page.inner_text("#status")
    v.page.fill("#key", "not-the-key")
    v.page.click("#key-form button")
    v.page.wait_for_selector("#status:has-text('refused')")
    v.page.fill("#key", KEY)
    v.page.click("#key-form button")
    v.wait_for_models()
    assert v.page.is_hidden("#key-form")
    request = v.run()
    assert v.sent.headers["authorization"] == f"Bearer {KEY}"
    assert v.output_vectors() == truth("copy", request)
    # The refused listing calls are network errors the browser logs, not JavaScript errors.
    assert all("401" in e for e in v.errors), v.errors
    assert v.context.cookies() == []


def test_the_page_works_behind_a_path_prefix(server, visit):
    proxy = PrefixProxy(server.url)
    try:
        v = visit(f"{proxy.url}{PREFIX}/")
        v.wait_for_models()
        request = v.run()
        assert v.sent.url == f"{proxy.url}{PREFIX}/v1/models/copy:predict"
        assert v.output_vectors() == truth("copy", request)
        assert proxy.misses == [] and v.errors == []
        assert f"{PREFIX}/v1/models/copy:predict" in v.page.text_content("#curl")
    finally:
        proxy.stop()


# -- the README's picture --------------------------------------------------------------------
def screenshot(path: str) -> None:
    """Run a copy of 12 vectors on the page and save a picture of it."""
    from playwright.sync_api import sync_playwright

    process = ServerProcess([])
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=chromium_path(),
                                                  args=["--no-sandbox"])
            v = Visit(launched, process.url + "/", width=1100, height=900)
            v.wait_for_models()
            v.set_number("#length", 12)
            v.run()
            v.page.screenshot(path=path, full_page=True)
            assert v.errors == [], v.errors
            launched.close()
    finally:
        process.stop()
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--screenshot":
        sys.exit("usage: python tests/serving/test_page.py --screenshot PATH")
    screenshot(sys.argv[2])


@pytest.mark.parametrize("name, fields", [
    ("ngrams", {"next_bit", "cost_bits", "optimal_cost_bits"}), ("priority-sort", {"output"})])
def test_the_paper_tasks_bundled_models_run_from_the_json_editor(server, visit, name, fields):
    """N-grams and priority sort have no bit editor of their own: the page offers the task's
    example as JSON, sends it, and shows the answer the server gives, with its verdict."""
    v = visit(server.url + "/")
    v.wait_for_models()
    v.page.select_option("[data-testid=model]", name)
    v.page.wait_for_selector("[data-testid=request-json]:visible")
    example = json.loads(v.page.input_value("[data-testid=request-json]"))
    from ntm.contract.tasks import get_task

    assert set(example) == set(get_task(name).request_keys)
    with v.page.expect_response(lambda r: r.url.endswith(f"/{name}:predict")) as response:
        v.run()
    answer = response.value.json()["predictions"][0]
    assert fields <= set(answer) and answer["within_training_range"]
    shown = json.loads(v.page.inner_text("[data-testid=answer-json]"))
    assert shown == {k: value for k, value in answer.items() if k != "attention"}
    assert "Within the training range" in v.verdict()
    assert v.errors == []
