"""Drive ``depthforge demo`` in headless chromium (Playwright on the system browser): used by tests/test_demo.py, and
to take the README's screenshot:

    python -m tests.demo_driver --checkpoint runs/cpu/checkpoints/last.ckpt --out docs/demo.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium(found: str | None = CHROMIUM) -> str:
    """The chromium to drive. Missing: a failure in CI (``CI`` set, as .ci/run sets it: the page must be tested
    there), a skip that says how to install it elsewhere."""
    import pytest

    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("no chromium: CI must test the demo page in a real browser (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium installed (Debian: apt install chromium; .ci/run does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(args: list[str], log: Path, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """``depthforge demo ARGS`` on a free port; returns the process and its URL once it answers."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "depthforge.cli", "demo", *args, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    start = time.time()
    while time.time() - start < timeout:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"demo did not start: {log.read_text()[-2000:]}")


def upload_and_predict(page, path: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.locator(f"#upload td[aria-label='{path.name}']").wait_for(timeout=30_000)
    page.locator("#predict").click()


def clear_upload(page) -> None:
    page.locator("#upload button[aria-label='Clear']").first.click()


def click_depth(page, fractions: list[tuple[float, float]]) -> str:
    """Click the depth image at fractions of its size, each click once the previous one's answer is shown (the
    page drops a click that comes while the last one is still being answered); return the last answer."""
    image = page.locator("#depth img").first
    image.wait_for(timeout=30_000)
    box = image.bounding_box()
    answer = page.locator("#measure textarea")
    text = answer.input_value()
    for fx, fy in fractions:
        before = text
        image.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        deadline = time.time() + 60
        while (text := answer.input_value()) == before and time.time() < deadline:
            time.sleep(0.1)
    return text


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="screenshot PNG")
    args = parser.parse_args()
    work = Path(args.out).with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    proc, url = start_demo(["--checkpoint", args.checkpoint], work / "demo.log")
    try:
        from depthforge.demo import example_images

        image = Path(example_images(work / "examples")[0])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            upload_and_predict(page, image)
            page.locator("#files a[download$='_depth.png']").wait_for(timeout=120_000)
            print(click_depth(page, [(0.3, 0.8), (0.7, 0.6)]))
            page.screenshot(path=args.out)
            browser.close()
    finally:
        proc.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
