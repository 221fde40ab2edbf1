"""The skip policy of the suite (registered by conftest.py): a test skipped because a package is missing fails
instead when ``pip install -e ".[dev]"`` installs that package, so an incomplete environment cannot pass CI by
skipping. ``DEPTHFORGE_ALLOW_SKIPS=1`` allows such skips (a partial install). Imports nothing heavy: the inner
pytest sessions of tests/test_skips.py load it."""

from __future__ import annotations

import os
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Distributions whose import name is not their name with '-' -> '_'.
IMPORT_NAME = {"scikit-image": "skimage", "pyyaml": "yaml", "pillow": "PIL"}


@cache
def dev_import_names() -> frozenset[str]:
    """Top-level import names of everything the ``dev`` extra installs (nested ``depthforge[...]`` expanded)."""
    pyproject = REPO / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    names, todo, seen = set(), ["dev"], set()
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for requirement in extras[extra]:
            dist, nested = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement).groups()
            if dist.lower() == "depthforge":
                todo += [e.strip() for e in (nested or "").split(",") if e.strip() and e.strip() not in seen]
            else:
                names.add(IMPORT_NAME.get(dist.lower(), dist.replace("-", "_")))
    return frozenset(names)


def _missing_dev_package(excinfo) -> str | None:
    """The module a skip was for, when it is one the dev extra installs."""
    if excinfo is None or not excinfo.errisinstance(pytest.skip.Exception):
        return None
    found = re.match(r"could not import '([^']+)'", str(excinfo.value))
    if found and found.group(1).split(".")[0] in dev_import_names() and not os.environ.get("DEPTHFORGE_ALLOW_SKIPS"):
        return found.group(1)
    return None


def _fail_report(report, where: str, module: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{where}: skipped because '{module}' cannot be imported, but pip install -e \".[dev]\" "
                       "installs it: the environment is incomplete (set DEPTHFORGE_ALLOW_SKIPS=1 to allow)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    module = _missing_dev_package(call.excinfo) if report.skipped else None
    if module:
        _fail_report(report, item.nodeid, module)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped:  # a module-level importorskip
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        found = re.search(r"could not import '([^']+)'", reason)
        if found and found.group(1).split(".")[0] in dev_import_names() \
                and not os.environ.get("DEPTHFORGE_ALLOW_SKIPS"):
            _fail_report(report, collector.nodeid, found.group(1))
