"""Errors a command explains in one line. Kept apart from the modules that
raise them so the CLI can catch them without importing numpy."""

PATTERNS = ("smpte", "gradient", "counter")  # the test patterns sources.py renders


class SourceError(Exception):
    """A source cannot deliver frames (bad file, decoder failure): one line for the user."""
