"""Examples that cannot rot: every ``bash`` and ``python`` block in README.md and docs/ is run or parse-checked.

A block runs unless the line before it marks it (docs/development.md says how to write one):
  ``<!-- test: parse: REASON -->``  needs the network, a GPU, the full challenge data or an install: every command
                                    is parsed instead (each option exists in the command's parser, each config key
                                    in the config, each pip extra in pyproject.toml, each program is a known one);
  ``<!-- test: by FILE::TEST -->``  run by that dedicated test, which also checks what the block's output means.
Runnable blocks of a page run in order, in a folder holding the files the docs name (``World``), with training
shortened (``TRAIN_SHORT``); nothing else in a command is changed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import train_tiny, write_pair
from depthforge.cli import build_parser, main, separate_values
from depthforge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:^<!-- test: (?P<mark>.*?) -->\n)?^```(?P<lang>bash|python)\n(?P<code>.*?)^```", re.S | re.M)
# Appended to every `depthforge train` a runnable block holds: two steps, tiny batches, no RAM cache.
# The embedded scenes shrink to 4 + 2 small images (keys that only the `synthetic` data set reads).
TRAIN_SHORT = ["--max-steps", "2", "data.batch_size=2", "data.val_batch_size=2", "train.progress_bar=false",
               "data.cache=false", "train.num_previews=0", "data.synthetic.num_train=4", "data.synthetic.num_val=2",
               "data.synthetic.height=48", "data.synthetic.width=64"]
# Programs a parse-checked block may name besides depthforge, pip and python (what each needs is not run here).
# curl talks to a running `depthforge serve` (tests/test_serve.py talks HTTP to one).
KNOWN_TOOLS = {"tar", "torchrun", "tensorboard", "mlflow", "mkdocs", "huggingface-cli", "source", "cd", "export",
               "curl"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    mark: str | None

    @property
    def mode(self) -> str:
        return "run" if self.mark is None else self.mark.split(":")[0].split()[0]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text[:m.start("code")].count("\n"), m["lang"], m["code"], m["mark"])
            for m in FENCE.finditer(text)]


def commands(code: str) -> list[list[str]]:
    """Shell lines joined over backslash continuations, comments dropped, split at ``&&``."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1:]
    return out


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_depthforge(argv: list[str]) -> None:
    """Raise AssertionError unless ``depthforge ARGV`` parses: options, sub-command and every config override."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(separate_values(argv))
    except SystemExit as err:
        raise AssertionError(f"depthforge {' '.join(argv)}: does not parse") from err
    unknown = [e for e in extra if "=" not in e or e.startswith("-")]
    assert not unknown, f"depthforge {' '.join(argv)}: unknown {unknown}"
    overrides = [o for o in list(getattr(args, "overrides", None) or []) + extra if "=" in o]
    load_config(getattr(args, "config", None), overrides)  # an unknown key or a badly typed value raises


def check_command(words: list[str]) -> None:
    """Parse one shell command of a docs block without running it."""
    program = Path(words[0]).name
    if program == "depthforge":
        return check_depthforge(words[1:])
    if program == "torchrun":
        assert "depthforge.cli" in words, f"{words}: torchrun runs depthforge.cli only in these docs"
        return check_depthforge(words[words.index("depthforge.cli") + 1:])
    if program == "pip" or words[1:3] == ["-m", "pip"]:
        for spec in words:
            if "[" in spec:
                named = set(spec[spec.index("[") + 1:spec.index("]")].split(","))
                assert named <= _extras(), f"{words}: no extra {sorted(named - _extras())}"
        return None
    if program.startswith("python"):
        modules = (["-m", "venv"], ["-m", "pytest"], ["-m", "http.server"])  # http.server: serving a web export
        assert words[1:3] in modules or words[1].startswith("benchmarks/"), words
        if words[1].startswith("benchmarks/"):
            assert (ROOT / words[1]).is_file(), f"{words[1]}: no such script"
        return None
    assert program in KNOWN_TOOLS, f"{words}: unknown program; run it or add it to KNOWN_TOOLS with a reason"
    return None


class World:
    """The files the docs' runnable blocks name, at the paths they name them."""

    @staticmethod
    def build(root: Path) -> None:
        rng = np.random.default_rng(0)
        # the real-time model (3.8 M parameters), weights only (best.ckpt), linked where the docs name checkpoints
        train_tiny(root / "runs" / "tiny", steps=2, extra=["model.name=realtime_efficientnet_lite0"], narrow=False)
        ckpt = root / "runs" / "tiny" / "checkpoints" / "best.ckpt"
        for link in ("best.ckpt", "a.ckpt", "b.ckpt",
                     *(f"runs/{r}/checkpoints/{c}.ckpt" for r in "ab" for c in ("best", "last"))):
            (root / link).parent.mkdir(parents=True, exist_ok=True)
            (root / link).symlink_to(ckpt)
        ramp = np.linspace(1.0, 9.0, 64, dtype=np.float32)[None].repeat(48, 0)
        for split, stems in (("train", range(6)), ("val", range(100, 103))):
            for i in stems:
                for sub in ("images", "depth"):
                    (root / "my_data" / sub / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                    root / "my_data" / "images" / split / f"{i:04d}.jpg")
                mm = (ramp * (1 + 0.1 * i % 3) * 1000).astype(np.uint16)
                Image.fromarray(mm).save(root / "my_data" / "depth" / split / f"{i:04d}.png")
        shutil.copytree(root / "my_data", root / "other_data")
        (root / "photos").mkdir()
        for name in ("photo.jpg", "img.jpg", "photos/a.jpg", "photos/b.jpg"):
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / name)
        (root / "known.csv").write_text("x,y,metres\n5,5,2.0\n40,20,4.0\n20,30,3.0\n")
        # the "4000x3000" photo of the tiling example is 300x400 here, so two tiles of 720x1280 -> 150x200 cover it
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(root / "big_4000x3000.jpg")
        from depthforge.data.sequence import save_sequence
        from depthforge.data.synthetic import render_sequence
        from depthforge.video.frames import write_test_video

        from test_foundation import make_depth_anything

        make_depth_anything(root / "models" / "Depth-Anything-V2-Small-hf")
        walk = render_sequence(seed=1, frames=4, height=48, width=64)
        save_sequence(walk, root / "walk")
        write_test_video(root / "clip.mp4", list(walk["rgb"]))
        (root / "frames").mkdir()
        for i, frame in enumerate(walk["rgb"]):
            Image.fromarray(frame).save(root / "frames" / f"{i:04d}.png")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        World.build(root)
    finally:
        os.chdir(cwd)
    return root


def run_block(block: Block) -> None:
    if block.lang == "python":
        exec(compile(block.code, str(block), "exec"), {"__name__": "__docs__"})
        return
    for words in commands(block.code):
        if Path(words[0]).name != "depthforge":
            check_command(words)  # an install line in a runnable block: its extras must exist
            continue
        argv = words[1:] + (TRAIN_SHORT if words[1] == "train" and "--help" not in words else [])
        try:
            code = main(argv)
        except SystemExit as done:  # --help
            code = done.code
        assert code == 0, f"{block}: {shlex.join(words)} failed"


ALL = [b for page in PAGES for b in blocks(page)]


def test_every_block_is_run_parsed_or_run_by_a_named_test():
    counts = {"run": 0, "parse": 0, "by": 0}
    for block in ALL:
        assert block.mode in counts, f"{block}: unknown mark {block.mark!r}"
        counts[block.mode] += 1
        if block.mode == "parse":
            assert block.mark.split(":", 1)[1].strip(), f"{block}: a parse-only block says why"
            if block.lang == "bash":
                for words in commands(block.code):
                    check_command(words)
            else:
                compile(block.code, str(block), "exec")
        if block.mode == "by":
            file, name = block.mark.split()[1].split("::")
            assert f"def {name}(" in (ROOT / file).read_text(), f"{block}: no test {block.mark}"
    print(f"docs code blocks: {len(ALL)} ({counts['run']} run here, {counts['by']} run by named tests, "
          f"{counts['parse']} parse-checked)")
    assert counts["run"] + counts["by"] >= 11  # a block marked parse-only without need lowers it


@pytest.mark.parametrize("page", sorted({b.page for b in ALL if b.mode == "run"}),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runnable_blocks_of_a_page_run(page, world, tmp_path, monkeypatch):
    shutil.copytree(world, tmp_path / "w", symlinks=True)
    monkeypatch.chdir(tmp_path / "w")
    for block in blocks(page):
        if block.mode == "run":
            run_block(block)


def test_a_renamed_option_or_key_fails_the_parse_check():
    check_depthforge(["evaluate", "--checkpoint", "a.ckpt", "--protocol", "standard", "--max-depth", "10"])
    with pytest.raises(AssertionError):  # --max-depth renamed
        check_depthforge(["evaluate", "--checkpoint", "a.ckpt", "--protocol", "standard", "--depth-cap", "10"])
    with pytest.raises(Exception, match="max_dept"):  # a config key renamed
        check_depthforge(["train", "--config", "cpu", "data.max_dept=10"])
    with pytest.raises(AssertionError, match="no extra"):
        check_command(["pip", "install", "-e", ".[hf,marigol]"])


def test_mkdocs_builds_the_site_strictly(tmp_path):
    import html

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stdout + done.stderr
    page = (tmp_path / "site" / "api" / "index.html").read_text()
    words = lambda s: re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9 ]", " ", s)).split()
    api = " ".join(words(html.unescape(re.sub(r"<[^>]+>", " ", page))))
    import depthforge  # the API page is generated from the docstrings: the first line of each is on it

    for obj in (depthforge.load, depthforge.DepthResult.calibrate, depthforge.save_predictions):
        first = " ".join(words(obj.__doc__.strip().splitlines()[0]))
        assert first in api, first
    # docstrings render as Markdown: no raw reST role or literal-block marker reaches the page, and the example is
    # a code block
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    raw = re.findall(r":(?:class|func|meth|mod|attr|data|obj|exc):`?[\w.~]+|\w+::\s", text)  # the role's
    # backticks become a <code> tag in the page, so the role is looked for with or without them
    assert not raw, raw[:5]
    assert re.search(r'<code>.*depthforge.*load.*\(.*"runs/quickstart', page, re.S)


def test_the_readme_stays_a_landing_page():
    assert len((ROOT / "README.md").read_bytes()) <= 10_240


def test_the_readme_picture_script_picks_the_percentile_images(world, tmp_path):
    data = tmp_path / "DepthEstimationUnreal"
    ramp = np.linspace(0.5, 30, 64, dtype=np.float32)[None].repeat(48, 0)
    for i in range(5):
        write_pair(data, "val", str(3469 + i), h=48, w=64, depth=ramp * (1 + 0.2 * i), seed=i)
    out = tmp_path / "pic.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_picture.py"), "--checkpoint",
                           str(world / "best.ckpt"), "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    info = json.loads(out.with_suffix(".json").read_text())
    import depthforge  # the per-image RMSE ranked here, independently of the script

    model = depthforge.load(world / "best.ckpt")
    rmse = {}
    for i in range(5):
        stem = str(3469 + i)
        pred = model.predict(str(data / "rgb" / "val" / f"{stem}.jpeg")).depth
        gt = np.clip(np.load(data / "depth" / "val" / f"{stem}.npy"), 0, 20)
        rmse[stem] = float(np.sqrt(np.mean((pred - gt) ** 2)))
    ranked = sorted(rmse, key=rmse.get)
    assert info["images"] == 5 and [r["stem"] for r in info["rows"]] == ranked[0:3]  # 10th, 30th, 50th of 5
    assert [r["rmse"] for r in info["rows"]] == [round(rmse[s], 3) for s in ranked[0:3]]
    assert Image.open(out).size[0] > 400
