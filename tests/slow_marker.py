"""The ``slow`` marker of the edit-test loop: ``pytest -n 2 -m "not slow"`` (conftest.py imports these hooks).

``pytest -n 2 --dist loadfile --record-slow`` writes ``tests/slow.txt``: each test whose call (with its teardown)
took ``SLOW_SECONDS`` or more in that run, and each fixture whose own set-up did (a trained model, a started
service). At collection a listed test is marked slow, and so is every test that uses a listed fixture: deselecting
only the first user of a trained model would move its training to the next one. A test whose set-up was slow with no
single fixture to blame (several middling ones) is listed itself. A partial run (a file, ``-k``, ``-x``) updates
the lines of what it ran and set up and keeps the others. A test not yet recorded counts as fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

SLOW_SECONDS = 1.0
FIXTURE = "fixture "  # the prefix of a fixture's line in slow.txt; a test's line is its node id


def slow_list(config: pytest.Config) -> Path:
    return config.rootpath / "tests" / "slow.txt"


def fixture_key(fixturedef) -> str:
    """Where a fixture is defined and its name: ``tests/test_api.py::served`` (``::tmp_path`` for a plugin's)."""
    return f"{fixturedef.baseid}::{fixturedef.argname}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-slow", action="store_true",
                     help=f"update tests/slow.txt (the `slow` marker): the tests and fixtures of this run that took "
                          f"{SLOW_SECONDS:g} s or more")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"slow: took {SLOW_SECONDS:g} s or more when tests/slow.txt was recorded, or "
                                       "uses a fixture that did (the edit-test loop deselects them: -m 'not slow')")
    if config.getoption("record_slow"):
        config.pluginmanager.register(Recorder(config), "depthforge-slow-recorder")


def read_slow(path: Path) -> set[str]:
    return {line for line in path.read_text().splitlines() if line.strip()} if path.is_file() else set()


class Recorder:
    """Times fixtures where they run (each xdist worker) and collects the reports where they arrive (the controller:
    pytest-xdist hands it every worker's reports, each with the set-up times of its test's fixtures in
    user_properties)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.item: pytest.Item | None = None
        self.fixtures: dict[str, float] = {}  # fixture key -> its longest set-up in this run
        self.tests: dict[str, bool] = {}  # node id of each test that ran -> slow

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        self.item = item
        try:
            return (yield)
        finally:
            self.item = None

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        start = time.perf_counter()  # the clock of pytest's own durations
        result = yield  # a fixture that fails is not timed: its users stay in the loop, where the failure shows
        if self.item is not None:
            self.item.user_properties.append(("fixture_setup", (fixture_key(fixturedef), time.perf_counter() - start)))
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        timed = [value for name, value in report.user_properties if name == "fixture_setup"]
        for key, seconds in timed:
            self.fixtures[key] = max(seconds, self.fixtures.get(key, 0.0))
        blamed = report.when == "setup" and any(seconds >= SLOW_SECONDS for _, seconds in timed)
        slow = report.duration >= SLOW_SECONDS and not blamed
        self.tests[report.nodeid] = self.tests.get(report.nodeid, False) or slow

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: its reports went to the controller
            return
        path = slow_list(self.config)
        # what this run did not set up or run keeps its line: a partial run (-k, a file, -x, Ctrl-C) updates its part
        kept = {line for line in read_slow(path)
                if (line[len(FIXTURE):] not in self.fixtures if line.startswith(FIXTURE) else line not in self.tests)}
        lines = kept | {FIXTURE + key for key, seconds in self.fixtures.items() if seconds >= SLOW_SECONDS}
        lines |= {nodeid for nodeid, slow in self.tests.items() if slow}
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in sorted(lines)))
        tmp.replace(path)


def _fixture_lines(item) -> set[str]:
    """The slow.txt lines of every fixture definition ``item`` uses, overridden ones too (an override that requests
    the slow fixture it overrides is slow as well)."""
    info = getattr(item, "_fixtureinfo", None)
    return {FIXTURE + fixture_key(d) for defs in info.name2fixturedefs.values() for d in defs} if info else set()


def mark_slow(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The collection hook's part (conftest.py calls it after sorting): mark the listed tests and fixtures' users."""
    slow = read_slow(slow_list(config))
    for item in items:
        if item.nodeid in slow or _fixture_lines(item) & slow:
            item.add_marker(pytest.mark.slow)
