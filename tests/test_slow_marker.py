"""The edit-test loop's `slow` marker (tests/slow_marker.py): what `--record-slow` lists, and what `-m "not slow"`
then leaves out, in inner pytest sessions run the README's way (pytest-xdist, two workers, whole files)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.slow_marker import SLOW_SECONDS

REPO = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
import time

import pytest

sys.path.insert(0, {str(REPO)!r})
from tests.slow_marker import pytest_addoption, pytest_configure, mark_slow  # noqa: F401

def pytest_collection_modifyitems(config, items):
    mark_slow(config, items)

@pytest.fixture(scope="session")
def model():  # a trained model: slow to set up, shared
    time.sleep({1.5 * SLOW_SECONDS})
    return 1
"""

# Two users of the conftest's slow "trained model", a fast function fixture, a slow test body, an override
MODEL = """
import pytest

@pytest.fixture
def quick():
    return 2

def test_first_user(model):
    assert model == 1

def test_second_user(model, quick):
    assert model + quick == 3

def test_quick(quick):
    assert quick == 2
"""

OTHER = f"""
import time
import pytest

@pytest.fixture
def model(model):  # a quick override that requests the slow fixture it overrides
    return model + 1

def test_override(model):
    assert model == 2

def test_slow_body():
    time.sleep({1.5 * SLOW_SECONDS})

def test_other():
    pass
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    environ = os.environ | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # only xdist, loaded by name: fewer imports
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist", *args],
                          cwd=folder, env=environ, capture_output=True, text=True, timeout=120)


def test_record_slow_lists_slow_fixtures_and_bodies_and_not_slow_leaves_out_every_user(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the inner session's root: tests/slow.txt is written here
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "tests" / "test_model.py").write_text(MODEL)
    (tmp_path / "tests" / "test_other.py").write_text(OTHER)
    recorded = _pytest(tmp_path, "-n", "2", "--dist", "loadfile", "--record-slow", "tests")
    assert recorded.returncode == 0 and "6 passed" in recorded.stdout, recorded.stdout + recorded.stderr
    # recorded on the xdist controller from both workers' reports: the fixture (not its first user) and the slow body
    listed = (tmp_path / "tests" / "slow.txt").read_text().splitlines()
    assert listed == ["fixture tests::model", "tests/test_other.py::test_slow_body"], listed

    chosen = _pytest(tmp_path, "--collect-only", "-m", "not slow", "tests")
    selected = sorted(line for line in chosen.stdout.splitlines() if "::" in line)
    # every user of the slow fixture left out, not only the first (its set-up would move to the next),
    # the override's user too
    assert selected == ["tests/test_model.py::test_quick", "tests/test_other.py::test_other"], chosen.stdout
    assert "4 deselected" in chosen.stdout, chosen.stdout

    # a partial run (here without xdist) updates what it ran and set up and keeps the rest of the list
    partial = _pytest(tmp_path, "--record-slow", "tests/test_model.py::test_quick", "tests/test_other.py::test_other")
    assert partial.returncode == 0 and "2 passed" in partial.stdout, partial.stdout + partial.stderr
    assert (tmp_path / "tests" / "slow.txt").read_text().splitlines() == listed
