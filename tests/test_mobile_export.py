"""Phones and browsers (#52): the end-to-end graph, LiteRT scored through its interpreter, Core ML validated, and the
web folder driven in Debian's chromium.

One tiny model (the shared 40-step one: its depth varies across an image, asserted where it matters, so a wrong
resize, scaling or layout cannot pass the 1e-4 m tolerances below) is exported once per format.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from depthforge.cli import main
from tests.conftest import shared_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny40):
    return shared_tiny(tiny40, tmp_path_factory, "mobile")


@pytest.fixture(scope="module")
def loaded(checkpoint):
    from depthforge.sources import load_checkpoint

    return load_checkpoint(checkpoint)


def _photo(h: int, w: int, seed: int = 4) -> np.ndarray:
    from depthforge.data import SyntheticScenes

    return SyntheticScenes(1, h, w, seed=seed).get_color(0)


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


# ---- the graph every app format holds ----

@pytest.mark.parametrize("n_in, n_out", [(144, 96), (250, 160), (37, 96), (3024, 224), (50, 50)])
def test_resize_weights_are_torchs_antialiased_bilinear(n_in, n_out):
    from depthforge.export.app import resize_weights

    x = torch.rand(1, 2, n_in, 5, dtype=torch.float64)
    ref = F.interpolate(x, size=(n_out, 5), mode="bilinear", align_corners=False, antialias=n_out < n_in)
    got = torch.einsum("oi,ncix->ncox", resize_weights(n_in, n_out).double(), x)
    assert (got - ref).abs().max().item() < 1e-6  # a plain (aliased) bilinear shrink is off by 1e-1 here


def test_the_end_to_end_graph_is_the_prediction_pipeline(loaded):
    import dataclasses

    from depthforge.export.app import EndToEnd
    from depthforge.predict.tta import predict_native

    model, cfg = loaded
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resize_short=40))  # trained at 48x64
    for h, w in ((60, 90), (36, 50), (48, 64)):  # shrunk, enlarged, the training size
        x = _tensor(_photo(h, w))
        with torch.no_grad():
            ref = predict_native(model, x, cfg.data)
            for graph in (EndToEnd(model, cfg), EndToEnd(model, cfg, (h, w))):  # dynamic (ONNX), static (phones)
                assert graph(x).shape == ref.shape
                assert (graph(x) - ref).abs().max().item() < 1e-4, (h, w)
    assert ref.std().item() > 0.05  # the depth varies: a shifted or flipped resize could not pass


# ---- ONNX: end to end, facts inside ----

def test_onnx_export_takes_the_photo_as_it_is_and_carries_its_facts(checkpoint, loaded, tmp_path, capsys):
    import depthforge
    from depthforge.export.quantize import read_metadata

    model, cfg = loaded
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    meta = read_metadata(out)
    facts = meta["depthforge_model"]
    assert facts["output"]["units"] == "metres" and facts["max_depth_m"] == cfg.data.max_depth
    assert facts["input"]["values"].startswith("pixel / 255") and facts["licenses"] == meta["depthforge_licenses"]
    rgb = _photo(70, 100)  # not the training size: the file resizes itself
    exported = depthforge.load(out).predict(rgb).depth
    eager = depthforge.load(checkpoint).predict(rgb).depth
    assert exported.shape == (70, 100) and np.abs(exported - eager).max() < 1e-4
    # a model trained at a resized geometry: the graph resizes any photo to it and back (dynamic sizes)
    import dataclasses

    from depthforge.export.onnx import OnnxModel, export_checked
    from depthforge.predict.tta import predict_native

    resized = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resize_short=40))
    path, _ = export_checked(model, resized, tmp_path / "r.onnx")
    for h, w in ((70, 100), (30, 44)):
        x = _tensor(_photo(h, w))
        with torch.no_grad():
            ref = predict_native(model, x, resized.data)
        assert (OnnxModel(path)(x) - ref).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="runs at one scale"):  # the graph would undo a TTA scale: refused
        depthforge.load(path).predict(rgb, tta_scales=(0.8, 1.0))


# ---- LiteRT ----

@pytest.fixture(scope="module")
def litert_export(checkpoint, tmp_path_factory):
    """INT8 and, with --keep-fp32, the fp32 file it was quantised from: one command, one conversion (15 s here)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("litert")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--checkpoint", str(checkpoint), "--format", "litert", "--quantize", "int8",
                     "--keep-fp32", "--out", str(folder / "q.tflite")]) == 0
    return folder / "q.fp32.tflite", folder / "q.tflite", printed.getvalue()


@pytest.fixture(scope="module")
def litert_files(litert_export):
    return litert_export[:2]


def test_litert_int8_export_keeps_its_fp32_file_on_request_each_checked_and_described(litert_export):
    from depthforge.export.litert import read_tflite_metadata

    fp32, int8, printed = litert_export
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["q.fp32.tflite", "q.tflite"]  # no temporary left
    assert f"{int8}: LiteRT, INT8 (dynamic range), input 64x48 NHWC" in printed
    assert f"{fp32}: LiteRT, input 64x48 NHWC" in printed  # checked against eager at fp32's own limits
    plain, quant = read_tflite_metadata(fp32), read_tflite_metadata(int8)
    assert "depthforge_quantization" not in plain and "quantization" not in plain["depthforge_model"]
    assert quant["depthforge_quantization"]["mode"] == "int8" and "quantization" in quant["depthforge_model"]
    assert plain["depthforge_licenses"] == quant["depthforge_licenses"] and plain["depthforge_config"]


def _scores(args: list[str], path) -> list[dict]:
    assert main(["evaluate", *args, "--json", str(path)]) == 0
    card = json.loads(path.read_text())
    return card if isinstance(card, list) else [card]


def test_litert_is_scored_like_eager_and_int8_close_to_it(checkpoint, litert_files, loaded, tmp_path):
    from depthforge.export.litert import LiteRTModel, read_tflite_metadata

    fp32, int8 = litert_files
    cards = _scores(["--checkpoint", str(checkpoint), "--onnx", str(fp32), str(int8)], tmp_path / "cards.json")
    eager, lite, quant = (c["metrics"] for c in cards)
    assert abs(lite["rmse"] - eager["rmse"]) < 1e-4 and abs(lite["ssim"] - eager["ssim"]) < 1e-4
    assert 1e-6 < abs(quant["rmse"] - eager["rmse"]) < 0.02 * 20  # INT8 changes it, within 2 % of the range
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size  # INT8 weights: a quarter of the bytes
    meta = read_tflite_metadata(fp32)
    assert meta["depthforge_model"]["input"]["size"] == [48, 64]  # the training images' size, from the config
    assert meta["depthforge_config"]["model"]["name"] == loaded[1].model.name
    assert "depthforge_quantization" in read_tflite_metadata(int8)
    runner = LiteRTModel(fp32)  # NHWC, as Android bitmaps: an NCHW mix-up could not match eager
    assert list(runner.input["shape"]) == [1, 48, 64, 3]


def _op_names(path) -> list[str]:
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    return [codes[max(model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode(),
                      model.OperatorCodes(graph.Operators(i).OpcodeIndex()).DeprecatedBuiltinCode())]
            for i in range(graph.OperatorsLength())]


def test_litert_weight_only_int8_dequantises_to_fp32_where_dynamic_range_computes_in_int8(litert_files, tmp_path):
    from depthforge.export.litert import LiteRTModel, _quantize_int8

    fp32, dynamic = litert_files
    weights = tmp_path / "w.tflite"
    weights.write_bytes(_quantize_int8(fp32.read_bytes(), weights_only=True))  # what --quantize int8-weights does
    assert "DEQUANTIZE" in _op_names(weights) and "DEQUANTIZE" not in _op_names(dynamic)
    assert weights.stat().st_size < 0.4 * fp32.stat().st_size
    x = torch.rand(1, 3, 48, 64)
    assert (LiteRTModel(weights)(x) - LiteRTModel(fp32)(x)).abs().max().item() < 0.02 * 20


def test_litert_predicts_any_photo_size_through_the_api(litert_files, loaded, tmp_path):
    import depthforge

    model, _ = loaded
    rgb = _photo(96, 160)  # not the file's 48x64: the runner resizes to it and back, as an app would
    lite = depthforge.load(litert_files[0]).predict(rgb).depth
    small = F.interpolate(_tensor(rgb), size=(48, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        expected = F.interpolate(model(small), size=(96, 160), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert lite.shape == (96, 160) and np.abs(lite - expected).max() < 1e-4
    assert expected.std() > 0.05
    Image.fromarray(rgb).save(tmp_path / "photo.png")  # and the command line runs the same file the same way
    assert main(["predict", "--onnx", str(litert_files[0]), str(tmp_path / "photo.png"), "--out",
                 str(tmp_path / "out")]) == 0
    assert np.abs(np.load(tmp_path / "out" / "photo.npy") - lite).max() < 1e-5


def test_tflite_metadata_entries_are_replaced_not_repeated():
    from depthforge.export.litert import read_tflite_metadata, with_metadata

    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    model = schema.ModelT()
    model.version, model.buffers, model.subgraphs = 3, [schema.BufferT()], []
    builder = flatbuffers.Builder(64)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = with_metadata(bytes(builder.Output()), {"depthforge_a": "1", "depthforge_b": '"x"'})
    data = with_metadata(data, {"depthforge_a": "2"})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.tflite").write_bytes(data)
        assert read_tflite_metadata(Path(tmp) / "m.tflite") == {"depthforge_a": 2, "depthforge_b": "x"}
    assert schema.Model.GetRootAs(data, 0).MetadataLength() == 2  # replaced, not a second depthforge_a


# ---- Core ML ----

def test_coreml_exports_validate_and_keep_their_precision(checkpoint, loaded, tmp_path, capsys):
    from depthforge.export.coreml import check_coreml, read_coreml_metadata

    model, _ = loaded
    out = tmp_path / "m.mlpackage"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "coreml", "--precision", "fp32",
                 "--input-size", "64x96", "--out", str(out)]) == 0
    assert "not run (Core ML runs only on Apple systems)" in capsys.readouterr().out
    found = check_coreml(out, model)
    assert found["input_size"] == [64, 96] and found["precision"] == "fp32" and found["weights_equal"] >= 1
    meta = read_coreml_metadata(out)
    assert meta["depthforge_model"]["licenses"][0]["license"] == "apache-2.0"
    # an fp16 package's weights are rounded: claiming fp32 for it fails the exact comparison
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "coreml", "--out", str(tmp_path / "h")]) == 0
    assert check_coreml(tmp_path / "h.mlpackage", model)["precision"] == "fp16"
    import coremltools as ct

    spec = ct.utils.load_spec(str(tmp_path / "h.mlpackage"))
    spec.description.metadata.userDefined["depthforge_precision"] = json.dumps("fp32")
    ct.utils.save_spec(spec, str(tmp_path / "lie.mlpackage"), weights_dir=str(tmp_path / "h.mlpackage" / "Data" /
                                                                               "com.apple.CoreML" / "weights"))
    with pytest.raises(AssertionError, match="depth head's weights"):
        check_coreml(tmp_path / "lie.mlpackage", model)


def test_app_export_options_are_checked_before_anything_is_written(checkpoint, tmp_path, capsys):
    for args, says in ((["--format", "coreml", "--quantize", "int8"], "--precision fp16"),
                       (["--format", "onnx", "--input-size", "48x64"], "--input-size is for --format litert"),
                       (["--format", "litert", "--input-size", "4x4"], "at least 16 pixels")):
        try:
            code = main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"), *args])
        except SystemExit as exit:  # argparse's own refusal of a value
            code = exit.code
        assert code == 2 and says in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="runs only on Apple systems"):
        import depthforge

        (tmp_path / "m.mlpackage").mkdir()
        depthforge.load(tmp_path / "m.mlpackage")


# ---- the web page, in a real browser ----

def _require_ort_web() -> None:
    """ONNX Runtime Web (cached, or fetched with npm). Missing: a failure in CI (.ci/run installs npm), a skip
    that says how to get it elsewhere."""
    import os

    from depthforge.export.web import OrtWebError, find_ort_web

    try:
        find_ort_web()
    except OrtWebError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the web export: {err}")
        pytest.skip(str(err))


def test_web_page_runs_the_model_in_chromium_like_onnx_runtime(checkpoint, tmp_path):
    import functools
    import http.server
    import threading

    from depthforge.export.onnx import OnnxModel
    from tests.demo_driver import require_chromium

    chromium = require_chromium()
    _require_ort_web()
    folder = tmp_path / "web"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "web", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["NOTICE.txt", "index.html", "model.onnx", "ort"]
    rgb = _photo(60, 90)  # PNG: the browser decodes the same pixels Pillow does
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/?ep=wasm")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')",
                                   timeout=120_000)
            page.set_input_files("#file", str(tmp_path / "photo.png"))
            page.wait_for_function("window.depthforge.depth !== null", timeout=120_000)
            w, h = page.evaluate("[window.depthforge.width, window.depthforge.height]")
            depth = np.array(page.evaluate("Array.from(window.depthforge.depth)"), dtype=np.float32).reshape(h, w)
            box = page.locator("#depth").bounding_box()
            x, y = 72, 15  # the middle of that pixel, however the page scales the canvas
            page.mouse.move(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h)
            readout = page.text_content("#readout")
            browser.close()
    finally:
        server.shutdown()
    ref = OnnxModel(folder / "model.onnx")(_tensor(rgb))[0, 0].numpy()
    assert (h, w) == (60, 90) and np.abs(depth - ref).max() < 1e-4  # WebAssembly's float sums vs the CPU's
    assert readout == f"{ref[y, x]:.2f} m at ({x}, {y})"  # the metres under the cursor, not a transposed pixel
    assert ref.std() > 0.05


def test_the_web_export_says_where_to_get_onnx_runtime_web(tmp_path, monkeypatch, checkpoint, capsys):
    from depthforge.export import web

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached
    monkeypatch.delenv("DEPTHFORGE_ORT_WEB", raising=False)
    monkeypatch.setattr(web.shutil, "which", lambda name: None)  # and no npm
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "web", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "npm is not installed" in err and "--ort-web DIR" in err and not (tmp_path / "w").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(web.OrtWebError, match="not an onnxruntime-web package"):
        web.find_ort_web(tmp_path / "empty")
    stalled = tmp_path / "npm"  # an npm whose registry never answers
    stalled.write_text("#!/bin/sh\nexec sleep 30\n")
    stalled.chmod(0o755)
    monkeypatch.setattr(web.shutil, "which", lambda name: str(stalled))
    monkeypatch.setattr(web, "NPM_TIMEOUT_S", 1)
    start = time.monotonic()
    with pytest.raises(web.OrtWebError, match="no answer within 1 s .*--ort-web DIR"):
        web.find_ort_web()
    assert time.monotonic() - start < 10 and not (tmp_path / "cache" / "depthforge").exists()
