"""Console output of the command line: one handler, one line per event, chosen verbosity."""

from __future__ import annotations

import logging
import sys
import warnings


# Lightning's start-up inventory of accelerators: said at --verbose only (train prints where it trains).
HARDWARE_LINES = ("GPU available", "TPU available", "HPU available", "IPU available")


def _keep(record: logging.LogRecord, verbosity: int) -> bool:
    message = record.getMessage()
    if "litlogger" in message:
        return False
    return verbosity > 0 or not (record.levelno == logging.INFO and message.startswith(HARDWARE_LINES))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning as one console line naming its kind, not a site-packages path and line."""
    logging.getLogger("depthforge.warnings").warning("%s (%s)", message, category.__name__)


class _ConsoleFormat(logging.Formatter):
    """INFO as the bare message; warnings and errors with their level and source."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def print_line(text: str) -> None:
    """One line of a command's results on stdout in a single write, then flushed: a pipe or a log file has it as
    it is printed (stdout to a pipe is block-buffered), and torchrun's ranks, unbuffered on one stdout, cannot cut
    into each other's lines (``tqdm.write`` writes the text and its newline apart). Progress bars are cleared around
    it."""
    from tqdm import tqdm

    with tqdm.external_write_mode():
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def configure_console(verbosity: int = 0) -> None:
    """One handler, one line per event: Lightning's own handler removed (it printed every INFO line twice next to
    the root's), its advertisement for another logger and a third-party deprecation notice filtered out.
    ``verbosity``: -1 warnings only (--quiet), 0 progress, 1 debug (--verbose). Call again after importing Lightning.
    """
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity]
    root = logging.getLogger()
    if not any(getattr(h, "depthforge", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.depthforge = True
        handler.setFormatter(_ConsoleFormat())
        handler.addFilter(lambda record: _keep(record, handler.verbosity))
        # Plain console handlers (basicConfig's) would print each line again; capturing ones (pytest's) stay.
        root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler] + [handler]
    for h in root.handlers:
        if getattr(h, "depthforge", False):
            h.verbosity = verbosity
            if h.stream is not sys.stderr:  # stderr replaced since (a test's capture, a daemon): write to today's
                with h.lock:  # not setStream(): it flushes the old stream, which may be closed
                    h.stream = sys.stderr
    root.setLevel(logging.WARNING)
    for name in ("depthforge", "lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
    warnings.showwarning = _show_warning
