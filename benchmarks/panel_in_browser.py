"""The notebook panel (shared.explore.panel) in a real browser: headless Chromium driving JupyterLab.

    apt-get install -y chromium chromium-driver && pip install selenium     # Debian's browser, never a download
    python benchmarks/panel_in_browser.py          # writes benchmarks/screenshots/*.png and a README.md naming each

Writes a small notebook into a temporary folder (find_min's committed checkpoint and `panel(...)`), serves it with
JupyterLab, runs it, then, as a user would: types a list and presses Enter, types half a list and pauses, draws from
a family and draws again. After each step it checks what the panel shows (one view, in the place of the last; the
box's list in its words; an error only after the pause) and saves a screenshot. Not part of the test suite (CI has
no browser); the panel's logic is tested without one in tests/test_explore.py. Exit status 1 when a check fails.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "panel-in-browser"
FAMILIES = ("near_tie", "min_last", "uniform")
CELL = f"""import sys
sys.path.insert(0, {str(ROOT)!r})  # the repository (or `pip install -e .`)
from shared import load_checkpoint
from shared.explore import panel
from shared.published import ROOT
from shared.tasks import task_of

model = load_checkpoint(ROOT / "find_min/checkpoints/model.pt")
suite = task_of(model).families(size=20)
panel(model, families={{suite.label(f): suite.of(f) for f in {FAMILIES!r}}}, head="L0H0")"""
MEDIAN_CELL = """from shared.explore import load_explanation

checkpoint = ROOT / "find_median/checkpoints/model.pt"
median_model = load_checkpoint(checkpoint)
panel(median_model, explanation=load_explanation(median_model, "find_median", checkpoint), head="L1H0")"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,1000"]


def write_notebook(folder: Path) -> str:
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
             for source in (CELL, MEDIAN_CELL)]
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}}, "nbformat": 4,
                "nbformat_minor": 5}
    (folder / "panel.ipynb").write_text(json.dumps(notebook))
    settings = folder / "settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    return "panel.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(folder: Path, port: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces")}
    lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                            "--allow-root", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                            f"--ServerApp.root_dir={folder}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "lab.log", "w"))
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
            return lab
        except OSError:
            time.sleep(0.5)
    lab.terminate()
    raise SystemExit(f"JupyterLab did not start: see {folder / 'lab.log'}")


def browser(chromium: str, driver: str, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


class Page:
    """The notebook page, with what the checks read: the panel's box, its status line and the view's outputs."""

    def __init__(self, driver, out: Path):
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.out, self.failed, self.shown = driver, out, [], []
        self.wait = lambda seconds=60: WebDriverWait(driver, seconds)

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def box(self):
        return self.find(".jp-OutputArea .widget-text input")[0]

    def status(self) -> str:
        return self.find(".jp-OutputArea .widget-html-content")[0].text

    def views(self) -> list:
        """The view's figures in the cell's outputs, each as (its top edge below the box's, its image source)."""
        below = self.box().location["y"]
        return [(img.location["y"] - below, img.get_attribute("src")) for img in
                self.find(".jp-OutputArea-output img")]

    def words(self) -> str:
        return " ".join(e.get_attribute("textContent") for e in self.find(".jp-OutputArea-output.jp-RenderedMarkdown"))

    def until(self, condition, seconds=30) -> bool:
        try:
            self.wait(seconds).until(lambda _: condition())
            return True
        except Exception:
            return False

    def check(self, what: str, ok: bool):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failed.append(what)

    def shot(self, name: str, what: str):
        path = self.out / f"{name}.png"
        self.driver.save_screenshot(str(path))
        shrink(path)
        self.shown.append(f"- `{path.name}`: {what}")
        print(f"     {path.relative_to(ROOT) if ROOT in path.parents else path}: {what}")


def shrink(path: Path):
    """A screenshot small enough to commit: 256 colours, the same pixels to the eye."""
    from PIL import Image
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def open_and_run(page: Page, port: int, name: str):
    from selenium.webdriver.common.keys import Keys
    page.driver.get(f"http://127.0.0.1:{port}/lab/tree/{name}?token={TOKEN}")
    page.check("the notebook opens", page.until(lambda: page.find(".jp-Notebook .jp-Cell .cm-content"), 90))
    page.until(lambda: page.find(".jp-Notebook-ExecutionIndicator[data-status='idle']") or
               "Idle" in page.driver.page_source, 60)
    time.sleep(2)
    for tab in page.find(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"):
        tab.click()  # fold the file browser away: the notebook as wide as a 1000-px window allows
    page.find(".jp-Notebook .jp-Cell .cm-content")[0].click()
    page.driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)
    page.check("the panel shows: a list box and the default list's view",
               page.until(lambda: page.find(".jp-OutputArea .widget-text input") and page.views(), 120))
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", page.box())
    time.sleep(1)


def type_a_list(page: Page, values: str):
    """Replace the box's text key by key, as a person types."""
    from selenium.webdriver.common.keys import Keys
    box = page.box()
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    for key in values:
        box.send_keys(key)
        time.sleep(0.05)


def typing_and_enter(page: Page):
    from selenium.webdriver.common.keys import Keys
    (top, first), = page.views()
    page.shot("1_default", "the panel as it opens: find_min's default list, L0H0 highlighted with all of SEP's "
                           "attention on the minimum (red), the uniform share 1/11 dashed")
    type_a_list(page, "30 12 45 19 60 7 33 8 50 21")
    page.check("while typing, the view is not redrawn per keystroke", page.views() == [(top, first)])
    page.box().send_keys(Keys.ENTER)
    page.check("Enter shows the typed list's view", page.until(lambda: page.views()[0][1] != first, 20))
    page.check("one view, in the place of the last (not appended below)",
               len(page.views()) == 1 and page.views()[0][0] == top)
    page.check("the view's words are the typed list's",
               page.until(lambda: "7 (5)" in page.words() and "21 (9)" in page.words(), 10))
    page.shot("2_typed_enter", "after typing 30 12 45 19 60 7 33 8 50 21 and Enter: its view replaces the "
                               "default one, in the same place (minimum 7 at position 5)")


def pause_and_error(page: Page):
    (top, shown), = page.views()
    type_a_list(page, "5 3")
    time.sleep(0.3)
    page.check("half a list shows no error while typing", "error" not in page.status())
    page.check("after a pause, a bad list is one line beside the box",
               page.until(lambda: "error: this model reads lists of 10 values, got 2" in page.status(), 10))
    page.check("and the last good view stays", page.views() == [(top, shown)])
    page.shot("3_pause_error", "'5 3' typed, then a pause: one line says the model reads lists of 10 values; the "
                               "view of the last good list stays")


def families(page: Page):
    from selenium.webdriver.support.ui import Select
    (top, before), = page.views()
    choice = Select(page.find(".jp-OutputArea .widget-dropdown select")[0])
    label = [o.text for o in choice.options][1]
    choice.select_by_visible_text(label)
    page.check(f"choosing '{label}' draws a list and shows it",
               page.until(lambda: page.views()[0][1] != before and "drawn from" in page.status(), 20))
    first, drawn = page.box().get_attribute("value"), page.views()[0][1]
    page.shot("4_family", f"'{label}' chosen: the family's first list drawn into the box, its view in place")
    page.find(".jp-OutputArea .widget-button")[0].click()
    page.check("'draw another' (the same family again) draws another list",
               page.until(lambda: page.box().get_attribute("value") != first and page.views()[0][1] != drawn, 20))
    page.check("still one view, in the same place", len(page.views()) == 1 and page.views()[0][0] == top)
    page.shot("5_draw_another", f"'draw another': the next '{label}' list replaces the last one")


def with_an_explanation(page: Page):
    """find_median's panel with its saved program beside the selecting head (the notebook's second cell)."""
    from selenium.webdriver.common.keys import Keys
    page.find(".jp-Notebook .jp-Cell .cm-content")[1].click()
    page.driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)
    cell = lambda: page.find(".jp-Notebook .jp-Cell")[1]
    page.check("find_median's panel shows its view",
               page.until(lambda: cell().find_elements("css selector", ".jp-OutputArea-output img"), 120))
    time.sleep(1)
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})",
                               cell().find_elements("css selector", ".jp-OutputArea-output img")[0])
    words = " ".join(e.get_attribute("textContent") for e in cell().find_elements(
        "css selector", ".jp-OutputArea-output.jp-RenderedMarkdown"))
    page.check("with the explanation's answer beside the model's", "explanation: answers" in words)
    page.shot("6_find_median_explanation", "find_median's panel: L0H0 spread evenly at 1/8 (dashed), L1H0 "
                                           "(highlighted) on the median, the saved program's attention as black "
                                           "ticks on it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--driver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as profile:
        name = write_notebook(Path(folder))
        lab = start_lab(Path(folder), port := free_port())
        driver = browser(args.chromium, args.driver, profile)
        page = Page(driver, args.out)
        try:
            open_and_run(page, port, name)
            typing_and_enter(page)
            pause_and_error(page)
            families(page)
            with_an_explanation(page)
        finally:
            driver.quit()
            lab.terminate()
            lab.wait(30)
    (args.out / "README.md").write_text("# The notebook panel in headless Chromium (benchmarks/panel_in_browser.py)\n\n" +
                                        "\n".join(page.shown) + "\n")
    print(f"{len(page.failed)} checks failed" if page.failed else "every check passed")
    return 1 if page.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
