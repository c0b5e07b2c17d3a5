"""The documentation site builds strictly, and its zoo page works in a real browser.

The site is built with ``mkdocs build --strict`` into a temporary folder, served on loopback and driven by Debian's
headless Chromium through Selenium and chromedriver. `.ci/run` installs both and sets ``FPN_ZOO_REQUIRE_BROWSER=1``, so
in CI a missing browser fails instead of skipping. The screenshot goes to ``$FPN_ZOO_ARTIFACTS`` (default
``.artifacts/`` in the checkout, git-ignored).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fpn_zoo.docs_site import load_sources
from fpn_zoo.registry import list_models
from fpn_zoo.weights.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
)


def _mkdocs_env() -> dict[str, str]:
    # Both variables silence banners that mkdocs plugins print about mkdocs 2; they change nothing else.
    return {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=_mkdocs_env())
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strictly_with_every_model_page(site: Path) -> None:
    for name in list_models():
        page = site / "zoo" / "models" / name / "index.html"
        assert page.is_file(), name
        assert f'<h1 id="{name}">{name}' in page.read_text()
    api = (site / "api" / "models" / "index.html").read_text()
    assert "create_model" in api  # the API reference is rendered from the docstrings
    assert (site / "zoo" / "latency.svg").is_file()


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("FPN_ZOO_REQUIRE_BROWSER"):
            pytest.fail(f"FPN_ZOO_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing")
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _artifacts() -> Path:
    artifacts = Path(os.environ.get("FPN_ZOO_ARTIFACTS", REPO / ".artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    return artifacts


def _rows(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#zoo-table tbody tr")
    return [row.get_attribute("data-model") for row in rows if row.is_displayed()]


def _column_values(driver, index: int) -> list[str]:
    script = (
        "return Array.from(document.querySelectorAll('#zoo-table tbody tr'))"
        f".map(r => r.cells[{index}].getAttribute('data-sort'));"
    )
    return driver.execute_script(script)


def test_zoo_page_lists_sorts_filters_and_plots(browser, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/zoo/")
    wait = WebDriverWait(browser, 30)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#zoo-table th[role=columnheader]")))

    # Every registered model is listed, once.
    assert sorted(_rows(browser)) == sorted(list_models())

    # Sorting by a numeric column orders the rows by that column's values, and a second click reverses them.
    headers = browser.find_elements(By.CSS_SELECTOR, "#zoo-table thead th")
    titles = [h.text for h in headers]
    column = next(i for i, t in enumerate(titles) if t.startswith("Params"))
    before = _rows(browser)
    headers[column].click()
    first = [float(v) for v in _column_values(browser, column) if v]
    assert first and first in (sorted(first), sorted(first, reverse=True)), first
    assert len(set(first)) > 1 and _rows(browser) != before, "sorting by params did not reorder the rows"
    headers[column].click()
    second = [float(v) for v in _column_values(browser, column) if v]
    assert second == first[::-1]

    # Sorting by name gives alphabetical order (in one direction or the other).
    headers[0].click()
    names = _rows(browser)
    assert names in (sorted(names), sorted(names, reverse=True))

    # Sorting by COCO box AP orders the models with weights by their default weights' AP; the others sort as blanks.
    manifest = load_manifest(REPO / "weights_manifest.json")
    column = next(i for i, t in enumerate(titles) if t.startswith("COCO box AP"))
    headers[column].click()
    values = [float(v) for v in _column_values(browser, column) if v]
    expected = {name: manifest.default_entry(name).coco_box_ap for name in manifest.pretrained_models()}
    assert sorted(values) == sorted(expected.values()) and values in (sorted(values), sorted(values, reverse=True))
    ranked = [name for name in _rows(browser) if name in expected]
    assert [expected[name] for name in ranked] == values

    # The filter keeps only the rows whose text holds every word: model names, and the weights tags they list.
    box = browser.find_element(By.ID, "zoo-filter")
    box.send_keys("bifpn convnext")
    wait.until(lambda d: len(_rows(d)) < len(list_models()))
    assert sorted(_rows(browser)) == sorted(list_models("bifpn_convnext*"))
    box.clear()
    box.send_keys("coco_tv_mask")
    with_tag = sorted(name for name in manifest.models if manifest.entry(name, "coco_tv_mask") is not None)
    wait.until(lambda d: sorted(_rows(d)) == with_tag)
    box.clear()
    box.send_keys(" ")  # an input event with no words shows everything again
    wait.until(lambda d: len(_rows(d)) == len(list_models()))

    # The plot is an SVG image that loaded and has a size.
    plot = browser.find_element(By.ID, "zoo-plot")
    browser.execute_script("arguments[0].scrollIntoView();", plot)
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", plot))
    assert plot.size["width"] > 300 and plot.size["height"] > 100

    browser.execute_script("window.scrollTo(0, 0);")
    shot = _artifacts() / "zoo-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_weights_column_lists_every_tag_with_its_sourced_ap(browser, server: str) -> None:
    """Each model's weights cell shows every tag to load, the default first and marked; each AP's tooltip names its
    source and date; a tag links to its section on the model page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    manifest = load_manifest(REPO / "weights_manifest.json")
    browser.get(f"{server}/zoo/")
    wait = WebDriverWait(browser, 30)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#zoo-table th[role=columnheader]")))
    for name in manifest.pretrained_models():
        row = browser.find_element(By.CSS_SELECTOR, f'#zoo-table tr[data-model="{name}"]')
        lines = row.find_elements(By.CSS_SELECTOR, ".zoo-weights-tag")
        available = [e for e in manifest.entries(name) if e.available]
        default = manifest.default_entry(name)
        assert len(lines) == len(available), name
        assert lines[0].text.startswith(f"{default.tag} default {default.coco_box_ap:.1f}"), lines[0].text
        assert [line.text.split()[0] for line in lines[1:]] == [e.tag for e in available if e is not default]
        for figure in row.find_elements(By.CSS_SELECTOR, ".zoo-figure"):
            title = figure.get_attribute("title")
            assert "Source: weights_manifest.json" in title and DATE.search(title), title

    # A model the committed benchmark run does not cover shows dashes that say so, and how to measure it.
    bench = load_sources(REPO).bench
    uncovered = [name for name in list_models() if bench is not None and bench.model(name) is None]
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#zoo-table thead th")]
    params = next(i for i, t in enumerate(titles) if t.startswith("Params")) + 1
    for name in uncovered:
        cell = browser.find_element(By.CSS_SELECTOR, f'#zoo-table tr[data-model="{name}"] td:nth-child({params})')
        assert cell.text == "\u2014" and f"run `fpn-zoo bench {name}`" in cell.get_attribute("title")

    # The weights of the model with the most tags, for the screenshot, then its default tag's link.
    name = max(manifest.pretrained_models(), key=lambda n: len(manifest.entries(n)))
    row = browser.find_element(By.CSS_SELECTOR, f'#zoo-table tr[data-model="{name}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", row)
    shot = _artifacts() / "zoo-weights.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    tag = manifest.default_entry(name).tag
    row.find_element(By.CSS_SELECTOR, f'a[href$="#weights-{tag}"]').click()
    section = wait.until(expected_conditions.visibility_of_element_located((By.ID, f"weights-{tag}")))
    assert browser.current_url.endswith(f"/zoo/models/{name}/#weights-{tag}")
    assert tag in section.text and "(default)" in section.text


def test_model_page_shows_its_figures_with_sources(browser, server: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/zoo/models/fpn_r50_coco/")
    text = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "fpn_r50_coco" in text and "Architecture" in text and "How to train" in text
    assert "Source:" in text
    assert "How the conversions were proven" in text and "What could not be verified" in text


def test_the_v2_model_page_shows_its_weights_and_measured_costs(browser, server: str) -> None:
    """The model registered last (torchvision's v2 heads): its weights, and the committed run's figures for it.

    (A page of a model the run does not cover says so instead; tests/test_docs_site.py checks that wording.)
    """
    from selenium.webdriver.common.by import By

    bench = load_sources(REPO).bench
    assert bench is not None and bench.model("fpn_r50_v2_coco") is not None, "the committed run covers every model"
    browser.get(f"{server}/zoo/models/fpn_r50_v2_coco/")
    text = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "Not benchmarked yet" not in text and bench.source.label in text
    assert "coco_tv_mask (default)" in text and "fasterrcnn_resnet50_fpn_v2" in text
    browser.execute_script("window.scrollTo(0, 0);")
    shot = _artifacts() / "model-page-fpn_r50_v2_coco.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
