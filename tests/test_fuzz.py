"""Every reader of outside data, fuzzed briefly with a fixed seed (#51): each input is read or refused with a
one-line user error naming the file, never a traceback. ``python benchmarks/fuzz.py`` runs the same targets at
length (10,000+ inputs each) and under atheris; docs/benchmarks/reliability.md has its figures.

The regression tests below hold the minimal inputs the fuzzers found, one per crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_targets import TARGETS, mutated

# Seconds per reader in CI: a fixed seed (derandomize) so a red run reruns red.
CI_EXAMPLES = {"image": 600, "depth": 600, "sidecar": 400, "points_csv": 400, "point_option": 400,
               "config_yaml": 300, "override": 400, "manifest": 300, "video": 200, "shared_folder": 40,
               "checkpoint": 60, "model_card": 300}


# Pillow warns while it decodes a corrupt TIFF or EXIF block, then reads or refuses it: expected on these inputs
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Truncated File Read:UserWarning")
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzzed_inputs_are_read_or_refused_in_one_line(name):
    target = TARGETS[name]
    seeds = target.seeds()
    for seed in seeds:  # every seed itself is read
        assert target(seed) == "read", name

    @settings(max_examples=CI_EXAMPLES[name], derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(seeds, target.kind))
    def fuzz(data):
        target(data)

    fuzz()
    assert target.tried >= CI_EXAMPLES[name]


# ---- regression tests: the minimal input of each crash found (by the fuzzers, or by the review that set them up) ---

def _refused(name: str, data: bytes, says: str) -> None:
    """The target refuses ``data`` in one line that says ``says``."""
    from depthforge.config import ConfigError
    from depthforge.io import DataError
    from depthforge.sources.checkpoint import CheckpointError

    target = TARGETS[name]
    with pytest.raises((DataError, ConfigError, CheckpointError)) as err:
        target.run(data, _fresh())
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert target(data) == "refused"  # and the harness agrees: one line, naming the file


def _fresh():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp())


@pytest.mark.parametrize("data, says", [
    (b"z\n", "not a JSON sidecar (JSONDecodeError"),  # was json.JSONDecodeError
    (b'{"scale": 1\xe1}', "not a JSON sidecar (UnicodeDecodeError"),  # was UnicodeDecodeError
    (b"[1, 2]", "a sidecar is a JSON object, got a list"),  # was AttributeError (list.get)
    (b'{"scale": "mm"}', "'scale' must be a number over 0"),  # was ValueError from float()
])
def test_a_broken_sidecar_is_refused_naming_it(data, says):
    _refused("sidecar", data, says)


@pytest.mark.parametrize("data, says", [
    (b'" unclosed', "not valid YAML (found unexpected end of stream at line 1"),  # was a 5-line YAML message
    (b"# \xc3P\n", "not a UTF-8 YAML recipe"),  # was UnicodeDecodeError
    # "billion laughs": 9 levels of 10 aliases = 10^9 values from 200 bytes (a hang before)
    (b"a: &a [x,x,x,x,x,x,x,x,x,x]\n" + b"".join(
        b"%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n" % ((98 + i, 98 + i) + (97 + i,) * 10) for i in range(8)),
     "far larger or deeper than any recipe"),
])
def test_a_hostile_recipe_is_refused_naming_it(data, says):
    _refused("config_yaml", data, says)


@pytest.mark.parametrize("data, says", [
    (b"data.crop=[144, 25", "its value is not valid YAML (expected ',' or ']'"),  # was yaml.ParserError
    (b"data.crop=\"[144", "its value is not valid YAML"),  # was yaml.ScannerError
    (b"data.root=a\x7fb", "its value is not valid YAML (unacceptable character #x007f"),  # was ReaderError
    (b"\nop", "override '\\nop' must look like section.key=value"),  # was a refusal over two lines
    (b"optim.lr=-inf", "optim.lr=-inf"),  # was ValueError: int("-inf") coercing numbers; now a float, out of range?
])
def test_a_hostile_override_is_refused_in_one_line(data, says):
    from depthforge.config import ConfigError, load_config

    if data == b"optim.lr=-inf":  # a number after all: taken as one (the optimiser's own checks judge its value)
        assert load_config(overrides=["optim.lr=-inf"]).optim.lr == float("-inf")
        return
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[data.decode("utf-8", errors="replace")])
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("data, says", [
    (b"image,depth\nimg", "a row needs an image and a depth path"),  # was TypeError (Path / None)
    (b"image,depth\n\xe1.png,d.png\n", "not a UTF-8 CSV manifest"),  # was UnicodeDecodeError
    (b"image,depth,scale\nimg/a.png,dep/a.png,nan\n", "scale 'nan' is not a number over 0"),  # all-NaN depth before
    # a quoted path with a newline in it: the "missing" message spread over two lines (found by benchmarks/fuzz.py)
    (b'image,depth\n"img/\nx.png",dep/a.png\n', "x.png': listed in"),
])
def test_a_hostile_manifest_is_refused_naming_it(data, says):
    _refused("manifest", data, says)


def test_videos_ffmpeg_cannot_read_are_refused_naming_them():
    mp4 = TARGETS["video"].seeds()[0]
    for data, says in ((b"\x01" + mp4[1:], "not a video FFmpeg can read (InvalidDataError"),  # was InvalidDataError
                       (mp4[:60], "not a video FFmpeg can read"),  # cut in its header: was EOFError
                       (b"RIFF" + b"\x00" * 64, "not a video FFmpeg can read")):
        _refused("video", data, says)


def test_a_header_claiming_80_gb_of_npy_depth_is_refused_before_allocating(tmp_path):
    # Found in the review: numpy allocated the shape its header claims (74.5 GiB for this 200-byte file) before
    # noticing the data was missing: MemoryError, or the machine's memory, instead of a one-line refusal
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (117 - len(header)) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 64
    _refused("depth", data, "its header claims (100000, 100000) float64 (80000000000 bytes) but the file holds 64")


@pytest.mark.parametrize("data, says", [
    # numpy's header parser raised tokenize.TokenError for this cut header
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 12, 16),  \n", "unreadable .npy"),
    (b"Pf\n99999 99999\n-1\n\x00\x00", "truncated PFM"),  # read to the end of the file before
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0cIHDR\x00\x00\x00\x10", "unreadable depth PNG"),
])
def test_broken_depth_files_are_refused_naming_them(data, says):
    _refused("depth", data, says)


def test_a_png_whose_header_is_cut_is_refused_not_a_value_error():
    # Pillow raised ValueError('Truncated IHDR chunk'), which read_rgb did not catch: a traceback from predict
    png = bytearray(TARGETS["image"].seeds()[2])
    png[11] = 0x0C  # the IHDR chunk's length: 12 instead of 13
    _refused("image", bytes(png), "unreadable image (Truncated IHDR chunk)")


@pytest.mark.parametrize("data, says", [
    (b"z\n", "not JSON (JSONDecodeError"),  # was json.JSONDecodeError
    (b'{"library_name": "depthforge", "config": {"optim": {"step_ize_up": 1}}}', "unknown key(s) ['step_ize_up']"),
    (b'{"library_name": "depthforge", "config": {"model": {"name": "unet_resnet1"}}}', "no model can be built"),
])
def test_a_shared_folders_broken_config_is_refused_naming_it(data, says):
    _refused("shared_folder", data, says)  # the config error named no file before


def test_a_checkpoint_with_an_edited_config_or_foreign_weights_is_refused_naming_it():
    import io

    import torch

    ckpt = torch.load(io.BytesIO(TARGETS["checkpoint"].seeds()[0]), weights_only=True)
    def rename(c):
        key, value = c["state_dict"].popitem()
        c["state_dict"][key + "_renamed"] = value

    def widen(c):  # found by benchmarks/fuzz.py: an edited width built a model far larger than memory (OOM kill)
        c["depthforge"]["config"]["model"]["kwargs"]["widths"] = [65535] * 4  # 16 GB of decoder weights

    for edit, says in ((lambda c: c["depthforge"]["config"]["data"].update(image_dhr="x"), "unknown key(s)"),
                       (rename, "its weights do not fit the model"),
                       (widen, "its config builds a model of"),
                       (lambda c: c["depthforge"].update(config=[1]), "the config must be a mapping")):
        edited = torch.load(io.BytesIO(TARGETS["checkpoint"].seeds()[0]), weights_only=True)
        edit(edited)
        buf = io.BytesIO()
        torch.save(edited, buf)
        _refused("checkpoint", buf.getvalue(), says)
    assert ckpt["depthforge"]["model_name"]


def test_predict_over_a_folder_of_fuzzed_photos_writes_the_good_names_the_bad_and_nothing_elsewhere(
        tmp_path_factory, tmp_path, capsys, monkeypatch, tiny40):
    """The command-line contract over many hostile files at once: the good photos' depth written, each bad file
    named in the one error line (exit 1: something was skipped), no traceback, nothing written outside --out."""
    import random

    from depthforge.cli import main
    from depthforge.io import read_rgb
    from tests.conftest import shared_tiny

    checkpoint = shared_tiny(tiny40, tmp_path_factory, "fuzz")
    photos = tmp_path / "photos"
    photos.mkdir()
    seeds, rng = TARGETS["image"].seeds(), random.Random(0)
    good, bad = [], []
    for i in range(40):
        data = bytearray(seeds[i % len(seeds)])
        if i % 3:  # two in three damaged: bytes flipped, cut or a header field set to an extreme
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                data[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00", bytes([rng.randrange(256)])])
            if rng.random() < 0.3:
                del data[rng.randrange(len(data)):]
        suffix = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        path = photos / f"p{i:02d}{suffix}"
        path.write_bytes(bytes(data))
        try:
            read_rgb(path)
            good.append(path.stem)
        except Exception:  # noqa: BLE001 - which ones the reader refuses decides what predict must skip
            bad.append(path.name)
    assert len(good) >= 10 and len(bad) >= 10
    monkeypatch.chdir(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert sorted(p.stem for p in out.glob("*.npy")) == sorted(good)
    assert f"{len(bad)} input(s) skipped" in err and all(name in err for name in bad)
    assert {p for p in tmp_path.rglob("*")} - before - {out, *out.rglob("*")} == set()  # nothing else written
