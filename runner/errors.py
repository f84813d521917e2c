"""The root of nirunner's own errors: each carries a message a person can act on."""


class NirunnerError(Exception):
    """An expected failure; the CLI prints its message without a traceback."""
