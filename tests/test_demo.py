"""``depthforge demo``: the app's actions, its API through gradio_client, and the page in a real headless chromium.

The app runs as ``depthforge demo`` in a child process on a free local port, with a tiny checkpoint trained here.
The browser test needs Debian's chromium (``.ci/run`` installs it with apt); it is skipped, saying so, only where no
chromium is installed. The page is driven by tests/demo_driver.py, which also takes the README's screenshot.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthforge.cli import main
from tests.conftest import shared_tiny
from tests.demo_driver import (CHROMIUM, clear_upload, click_depth, require_chromium, start_demo,
                               upload_and_predict)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny40):
    # Trained long enough that its depth spans metres across the photo: the PNG and distance checks can fail.
    return shared_tiny(tiny40, tmp_path_factory, "demo")


@pytest.fixture(scope="module")
def demo(checkpoint, tmp_path_factory):
    """The demo process, its URL and its log; test_a_stopped_demo_removes_its_files_and_gives_no_share_hint, the last
    test of this file, stops it."""
    log = tmp_path_factory.mktemp("demo-log") / "demo.log"
    proc, url = start_demo(["--checkpoint", str(checkpoint), "--max-side", "320"], log)
    yield proc, url, log
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(demo):
    return demo[1]


@pytest.fixture()
def photo(tmp_path):
    from depthforge.data import SyntheticScenes

    path = tmp_path / "street.png"
    Image.fromarray(SyntheticScenes(1, 96, 160, seed=4).get_color(0)).save(path)
    return path


def _predict_cli(checkpoint, photo, out) -> np.ndarray:
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(out)]) == 0
    return np.load(out / f"{photo.stem}.npy")


def test_app_actions_measure_calibrate_and_refuse_bad_files(checkpoint, photo, tmp_path):
    from depthforge.demo import DemoApp, default_sources
    from depthforge.io import DataError

    app = DemoApp(default_sources([str(checkpoint)], None, None), workdir=tmp_path / "work", max_side=120)
    name = next(iter(app.sources))
    result, out = app.predict(str(photo), name)
    assert result.depth.shape == (72, 120) and "downscaled from 160x96 to 120x72" in out["info"]
    assert result.depth.max() - result.depth.min() > 0.1  # 100x the PNG step and 20x the distance tolerance
    assert {Path(f).name for f in out["files"]} == {"street_depth.png", "street_depth.npy", "street_depth.png.json",
                                                    "street_depth.ply"}
    assert all(Path(f).resolve().is_relative_to((tmp_path / "work").resolve()) for f in out["files"] + [out["glb"]])
    app.click(result, 10, 20)
    text = app.click(result, 100, 50)
    d = float(re.search(r"distance .*: ([\d.]+) m", text).group(1))
    z1, z2 = result.depth[20, 10], result.depth[50, 100]
    f = (120 / 2) / math.tan(math.radians(60 / 2))  # fx of a 120-px-wide image with a 60-degree field of view
    p1 = np.array([(10 - 59.5) / f * z1, (20 - 35.5) / f * z1, z1])
    p2 = np.array([(100 - 59.5) / f * z2, (50 - 35.5) / f * z2, z2])
    assert d == pytest.approx(float(np.linalg.norm(p1 - p2)), abs=2e-3)
    assert result.result.distance((10, 20), (100, 50)) == pytest.approx(d, abs=1e-3)
    app.calibrate(result, 7.5)  # the last click now reads 7.5 m, everything else scaled alike
    assert result.depth[50, 100] == pytest.approx(7.5, rel=1e-5)
    assert result.depth[20, 10] == pytest.approx(z1 * 7.5 / z2, rel=1e-4)
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    with pytest.raises(DataError, match="notes.jpg: not a readable image"):
        app.predict(str(junk), name)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: the file is empty"):
        app.predict(str(empty), name)


def test_video_tab_stops_at_the_frame_limit(checkpoint, tmp_path):
    from depthforge.demo import DemoApp, default_sources
    from depthforge.video.frames import read_frames, write_test_video

    rng = np.random.default_rng(0)
    clip = write_test_video(tmp_path / "clip.mp4", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
                                                    for _ in range(6)])
    app = DemoApp(default_sources([str(checkpoint)], None, None), workdir=tmp_path / "work", max_frames=4)
    seen = []
    out, note = app.video(str(clip), next(iter(app.sources)), progress=lambda i, n: seen.append((i, n)))
    assert sum(1 for _ in read_frames(out)) == 4 and "4 frame(s)" in note and seen[-1] == (4, 4)


def test_demo_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 2
    assert "depthforge train --out runs/quickstart" in capsys.readouterr().err


def test_api_returns_the_raw_depth_file(server, checkpoint, photo, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    outputs = client.predict(handle_file(str(photo)), str(checkpoint), "magma", True, 20, False, 60,
                             api_name="/predict")
    files = {Path(f["value"] if isinstance(f, dict) else f).name: Path(f["value"] if isinstance(f, dict) else f)
             for f in outputs[2]}
    expected = _predict_cli(checkpoint, photo, tmp_path / "cli")
    np.testing.assert_allclose(np.load(files["street_depth.npy"]), expected, atol=1e-6)


def _png_metres(path: Path, sidecar: dict) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / sidecar["scale"]


def test_the_browser_test_cannot_be_skipped_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must test the demo page"):
        require_chromium(None)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt install chromium"):
        require_chromium(None)
    assert require_chromium("/usr/bin/chromium") == "/usr/bin/chromium"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert 'export CI="${CI:-true}"' in ci  # CI runs with CI set, whatever its runner sets


def test_the_page_in_a_real_browser(server, checkpoint, photo, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = require_chromium(CHROMIUM)
    expected = _predict_cli(checkpoint, photo, tmp_path / "cli")
    assert expected.max() - expected.min() > 0.1  # 100x the PNG step: a wrong scale or pixel shows
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    big = tmp_path / "wide.png"
    Image.fromarray(np.full((100, 700, 3), 128, np.uint8)).save(big)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        page = browser.new_page(accept_downloads=True, viewport={"width": 1400, "height": 1600})
        page.goto(server)
        # Bad input: a message in the page, and the app keeps serving.
        upload_and_predict(page, junk)
        page.get_by_text("notes.jpg: not a readable image").first.wait_for(timeout=60_000)
        clear_upload(page)
        upload_and_predict(page, big)
        page.get_by_text("downscaled from 700x100 to 320x46").first.wait_for(timeout=60_000)
        clear_upload(page)

        upload_and_predict(page, photo)
        page.locator("#files a[download='street_depth.png']").wait_for(timeout=60_000)
        assert page.locator("#slider img").count() >= 1
        links = page.locator("#files a")
        assert {links.nth(i).get_attribute("download") for i in range(links.count())} == {
            "street_depth.png", "street_depth.npy", "street_depth.png.json", "street_depth.ply"}
        downloads = {}
        for name in ("street_depth.png", "street_depth.png.json"):
            with page.expect_download() as info:
                page.locator(f"#files a[download='{name}']").click()
            downloads[name] = tmp_path / f"dl-{name}"
            info.value.save_as(downloads[name])
        sidecar = json.loads(downloads["street_depth.png.json"].read_text())
        metres = _png_metres(downloads["street_depth.png"], sidecar)
        np.testing.assert_allclose(metres, expected, atol=1.0 / sidecar["scale"])

        # Two clicks on the depth image: the distance shown is the one the raw depth gives.
        text = click_depth(page, [(0.2, 0.7), (0.8, 0.4)])
        found = re.search(r"distance \((\d+), (\d+)\) - \((\d+), (\d+)\): ([\d.]+) m", text)
        assert found, text
        x1, y1, x2, y2 = (int(v) for v in found.groups()[:4])
        h, w = metres.shape
        f = (w / 2) / math.tan(math.radians(60) / 2)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        pts = [np.array([(x - cx) / f * metres[y, x], (y - cy) / f * metres[y, x], metres[y, x]])
               for x, y in ((x1, y1), (x2, y2))]
        assert float(found.group(5)) == pytest.approx(float(np.linalg.norm(pts[0] - pts[1])), abs=5e-3)
        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()


def test_a_stopped_demo_removes_its_files_and_gives_no_share_hint(demo):
    import signal

    proc, _, log = demo
    workdir = Path(re.search(r"files under (\S+),", log.read_text()).group(1))
    assert workdir.is_dir() and (workdir / "examples").is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert not workdir.exists(), text
    assert "share=True" not in text and "--host 0.0.0.0 shares it" in text
