"""Every loader on fixtures the test writes: same metres, clear errors, counted skips, identical cache."""

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from depthforge.cli import main
from depthforge.config import DataConfig
from depthforge.data import DataError, build_dataset
from depthforge.data.cache import CachedDataset, write_cache
from depthforge.io.depth import write_pfm

H, W = 12, 20


def scene(i):
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = (rng.integers(500, 9900, (H, W)) / 1000.0).astype(np.float32)  # millimetre-exact metres, < 10 m
    return rgb, depth


def load_all(cfg, split):
    ds = build_dataset(cfg, split, train=False)
    return {ds.stem(i).split("/")[-1]: ds[i] for i in range(len(ds))}


def assert_same_metres(samples, atol):
    for i in range(3):
        _, depth = scene(i)
        s = samples[str(i)]
        np.testing.assert_allclose(s["depth"][0].numpy(), depth, atol=atol)
        assert s["image"].shape == (3, H, W)


@pytest.mark.parametrize("kind", ["npy", "png16", "pfm", "exr"])
def test_generic_folder(tmp_path, kind):
    if kind == "exr":
        openexr = pytest.importorskip("OpenEXR")
    for i in range(3):
        rgb, depth = scene(i)
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "depth").mkdir(exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "images" / f"{i}.png")
        if kind == "npy":
            np.save(tmp_path / "depth" / f"{i}.npy", depth)
        elif kind == "png16":
            Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(tmp_path / "depth" / f"{i}.png")
        elif kind == "pfm":
            write_pfm(tmp_path / "depth" / f"{i}.pfm", depth)
        else:
            with openexr.File({"type": openexr.scanlineimage}, {"Z": depth}) as f:
                f.write(str(tmp_path / "depth" / f"{i}.exr"))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("0\n1\n2\n")
    (tmp_path / "intrinsics.json").write_text('{"fx": 30, "fy": 31, "cx": 9.5, "cy": 5.5}')
    samples = load_all(DataConfig(name="folder", root=str(tmp_path)), "val")
    assert samples["1"]["meta"]["intrinsics"] == [30.0, 31.0, 9.5, 5.5]
    assert_same_metres(samples, 1e-6)
    rgb, _ = scene(0)
    assert torch.equal((samples["0"]["image"] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(rgb))


def test_manifest_with_scale_column(tmp_path):
    rows = ["image,depth,split,scale"]
    for i in range(3):
        rgb, depth = scene(i)
        Image.fromarray(rgb).save(tmp_path / f"im{i}.jpg", quality=95)
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(tmp_path / f"d{i}.png")
        rows.append(f"im{i}.jpg,d{i}.png,val,256")
    rows.append("other.jpg,other.png,train,256")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    ds = build_dataset(DataConfig(name="manifest", root=str(tmp_path / "m.csv")), "val", train=False)
    assert len(ds) == 3
    for i in range(3):
        np.testing.assert_allclose(ds[i]["depth"][0].numpy(), scene(i)[1], atol=0.5 / 256)


def test_nyu_scene_folders_8bit_and_16bit(tmp_path):
    for i in range(3):
        rgb, depth = scene(i)
        folder = tmp_path / "train" / f"kitchen_{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{i}.jpg", quality=95)
        if i < 2:  # training pairs: 8-bit, 255 = 10 m
            Image.fromarray(np.round(depth / 10 * 255).astype(np.uint8)).save(folder / f"{i}.png")
        else:  # test pairs: 16-bit millimetres
            Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(folder / f"{i}.png")
    samples = load_all(DataConfig(name="nyu", root=str(tmp_path), max_depth=10.0), "train")
    assert_same_metres(samples, 10 / 255 / 2 + 1e-6)
    np.testing.assert_allclose(samples["2"]["depth"][0].numpy(), scene(2)[1], atol=1e-6)  # mm exact


def test_nyu_labeled_mat(tmp_path):
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:  # MATLAB v7.3 stores arrays transposed: (N, 3, W, H) and (N, W, H)
        f["images"] = np.stack([scene(i)[0].transpose(2, 1, 0) for i in range(3)])
        f["depths"] = np.stack([scene(i)[1].T for i in range(3)])
    (tmp_path / "val.txt").write_text("0 1 2")
    ds = build_dataset(DataConfig(name="nyu-mat", root=str(path), max_depth=10.0), str(tmp_path / "val.txt"),
                       train=False)
    for i in range(3):
        np.testing.assert_allclose(ds[i]["depth"][0].numpy(), scene(i)[1], atol=1e-6)
        assert torch.equal((ds[i]["image"] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(scene(i)[0]))


def test_kitti_sparse_png_and_file_list(tmp_path):
    lines = []
    for i in range(3):
        rgb, depth = scene(i)
        depth[::2, ::3] = 0  # no LiDAR return
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(tmp_path / f"{i}_gt.png")
        lines.append(f"{i}.png {i}_gt.png 721.5")
    lines.append("9.png None 721.5")  # test image without ground truth
    (tmp_path / "eigen_val.txt").write_text("\n".join(lines))
    ds = build_dataset(DataConfig(name="kitti", root=str(tmp_path), max_depth=80.0), "eigen_val.txt", train=False)
    assert len(ds) == 3
    s = ds[1]
    expected = scene(1)[1]
    assert not s["mask"][0, 0, 0] and s["mask"][0, 1, 1]  # zeros are invalid
    np.testing.assert_allclose(s["depth"][0].numpy()[s["mask"][0].numpy()],
                               expected[s["mask"][0].numpy()], atol=0.5 / 256)


def _folder_with(tmp_path, n=4):
    for i in range(n):
        rgb, depth = scene(i)
        (tmp_path / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "depth").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "images" / f"{i}.jpg")
        np.save(tmp_path / "depth" / f"{i}.npy", depth)
    return DataConfig(name="folder", root=str(tmp_path))


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "images" / "1.jpg").write_bytes((r / "images" / "1.jpg").read_bytes()[:60]), "1.jpg"),
    (lambda r: (r / "depth" / "1.npy").write_bytes(b""), "1.npy"),
    (lambda r: (r / "depth" / "1.npy").write_bytes(b"\x93NUMPY garbled"), "1.npy"),
    (lambda r: np.save(r / "depth" / "1.npy", np.ones((5, 5), np.float32)), "does not match"),
    (lambda r: np.save(r / "depth" / "1.npy", np.full((H, W), np.nan, np.float32)), "NaN"),
    (lambda r: (r / "depth" / "1.npy").unlink(), "no partner"),
    (lambda r: (r / "depth" / "1.npy").rename(r / "depth" / "1.txt"), "no partner"),
])
def test_bad_inputs_error_clearly_or_skip_and_count(tmp_path, damage, message):
    cfg = _folder_with(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError, match=message):
        ds = build_dataset(cfg, "train", train=False)
        for i in range(len(ds)):
            ds[i]
    skipping = build_dataset(DataConfig(**{**cfg.__dict__, "skip_invalid": True}), "train", train=False)
    assert len(skipping) == 3 and skipping.skipped == 1
    loader = torch.utils.data.DataLoader(skipping, batch_size=2)
    assert sum(b["image"].shape[0] for b in loader) == 3  # a whole epoch, no crash


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    with pytest.raises(DataError, match="images.*no images"):
        build_dataset(DataConfig(name="folder", root=str(tmp_path)), "train", train=False)


def test_memmap_cache_equals_loader(tmp_path):
    cfg = _folder_with(tmp_path / "d")
    ds = build_dataset(DataConfig(**{**cfg.__dict__, "max_depth": 5.0}), "train", train=False)
    cached = CachedDataset(write_cache(ds, tmp_path / "c"), max_depth=5.0)
    assert json.loads((tmp_path / "c" / "index.json").read_text())["depth_dtype"] == "float32"
    for i in range(len(ds)):
        a, b = ds[i], cached[i]
        assert a["meta"]["stem"] == b["meta"]["stem"]
        for k in ("image", "depth", "mask"):
            assert torch.equal(a[k], b[k])


def test_data_check_reports_and_exits(tmp_path, capsys):
    cfg = _folder_with(tmp_path)
    assert main(["data", "check", str(tmp_path), "--format", "folder", "--split", "train",
                 "--png", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "4 sample(s)" in out and "OK" in out and (tmp_path / "s.png").is_file()
    np.save(tmp_path / "depth" / "2.npy", np.full((H, W), 4000.0, np.float32))  # millimetres saved as metres
    (tmp_path / "depth" / "3.npy").unlink()
    for i in (0, 1):
        np.save(tmp_path / "depth" / f"{i}.npy", np.full((H, W), 3500.0, np.float32))
    assert main(["data", "check", str(tmp_path), "--format", "folder", "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "3.jpg" in out and "unpaired" in out and "looks like millimetres" in out


def test_convert_to_generic_layout(tmp_path):
    for i in range(3):
        rgb, depth = scene(i)
        folder = tmp_path / "nyu" / "train" / "office"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{i}.jpg", quality=95)
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(folder / f"{i}.png")
    assert main(["data", "convert", str(tmp_path / "nyu"), "--format", "nyu", "--split", "train",
                 "--out", str(tmp_path / "g"), "data.max_depth=10"]) == 0
    samples = load_all(DataConfig(name="folder", root=str(tmp_path / "g"), max_depth=10.0), "train")
    for i in range(3):
        np.testing.assert_allclose(samples[f"office__{i}"]["depth"][0].numpy(), scene(i)[1], atol=1e-6)


def test_data_preview_writes_augmented_grid(tmp_path):
    out = tmp_path / "aug.png"
    assert main(["data", "preview", "--out", str(out), "--n", "3", "data.hflip=true", "data.color_jitter=0.3",
                 "data.synthetic.num_train=3", "data.synthetic.height=32", "data.synthetic.width=48"]) == 0
    assert Image.open(out).size == (2 * 48, 3 * 32)
