"""The one error a file that cannot be used raises, from the readers up to the data sets."""


class DataError(RuntimeError):
    """A file or sample that cannot be used; the message names the file and the fix."""


def shown(path: object) -> str:
    """A path as an error message shows it: as is, or quoted with escapes when it holds a newline or another
    unprintable character (a file name may; the message must stay one line)."""
    text = str(path)
    return text if text.isprintable() else repr(text)
