"""A test skipped for a package that the dev extra installs fails (conftest.py); other skips stay skips."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from tests.skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
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
    # no third-party plugin is loaded (the hooks under test are conftest.py's): each took import time in both runs
    environ = {k: v for k, v in os.environ.items() if k != "DEPTHFORGE_ALLOW_SKIPS"} | env | {
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", str(folder)],
                          cwd=folder, env=environ, capture_output=True, text=True, timeout=120)


def test_a_skip_for_a_missing_dev_package_fails_in_a_test_and_at_module_level(tmp_path):
    # Both kinds in one inner session (each inner pytest pays the imports of a new process)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    strict = _pytest(tmp_path)
    assert strict.returncode == 1 and "'av' cannot be imported, but pip install" in strict.stdout, strict.stdout
    assert "'h5py' cannot be imported, but pip install" in strict.stdout, strict.stdout
    # the in-test skip failed, the module's skip failed its collection, the foreign package's skip stayed a skip
    assert "1 failed, 1 skipped" in strict.stdout and "1 error" in strict.stdout, strict.stdout
    allowed = _pytest(tmp_path, DEPTHFORGE_ALLOW_SKIPS="1")
    assert allowed.returncode == 0 and "3 skipped" in allowed.stdout, allowed.stdout
