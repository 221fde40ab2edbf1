"""A test skipped for a package that the dev extra installs fails (conftest.py); other skips stay skips."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
"""

TESTS = """
import sys
import pytest

sys.modules["av"] = None  # as if av were not installed: importing it raises ImportError

def test_needs_a_dev_package():
    pytest.importorskip("av")

def test_needs_a_package_dev_does_not_install():
    pytest.importorskip("no_such_package_xyz")
"""

MODULE_LEVEL = """
import sys
import pytest

sys.modules["h5py"] = None
h5py = pytest.importorskip("h5py")

def test_hidden():
    pass
"""


def _pytest(folder: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DEPTHFORGE_ALLOW_SKIPS"} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                          cwd=folder, env=environ, capture_output=True, text=True, timeout=120)


def test_skip_for_a_missing_dev_package_fails(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS)
    strict = _pytest(tmp_path)
    assert strict.returncode == 1 and "1 failed, 1 skipped" in strict.stdout, strict.stdout
    assert "'av' cannot be imported, but pip install" in strict.stdout
    allowed = _pytest(tmp_path, DEPTHFORGE_ALLOW_SKIPS="1")
    assert allowed.returncode == 0 and "2 skipped" in allowed.stdout, allowed.stdout


def test_module_level_skip_for_a_dev_package_fails(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    strict = _pytest(tmp_path)
    assert strict.returncode != 0 and "'h5py' cannot be imported, but pip install" in strict.stdout, strict.stdout
    allowed = _pytest(tmp_path, DEPTHFORGE_ALLOW_SKIPS="1")
    assert allowed.returncode == 5 and "1 skipped" in allowed.stdout, allowed.stdout  # 5: no test ran, none failed
