"""The one error a file that cannot be used raises, from the readers up to the data sets."""


class DataError(RuntimeError):
    """A file or sample that cannot be used; the message names the file and the fix."""


def shown(path: object) -> str:
    """A path as an error message shows it: as is, or quoted with escapes when it holds a newline or another
    unprintable character (a file name may; the message must stay one line)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def one_line(err: BaseException, limit: int = 120) -> str:
    """What an exception says, on one line and at most ``limit`` characters (its type when it says nothing): the
    part of a reader's refusal that quotes a library's own error."""
    return " ".join(str(err).split())[:limit] or type(err).__name__
