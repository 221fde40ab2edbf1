"""The one error a file that cannot be used raises, from the readers up to the data sets."""


class DataError(RuntimeError):
    """A file or sample that cannot be used; the message names the file and the fix."""
