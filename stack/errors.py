"""The one error the stack raises, so a caller (the CLI, a fixture) catches one type and
shows its message, which names the part and, where there is one, its log's tail."""


class StackError(RuntimeError):
    """A part of the stack could not be started, awaited or stopped; the message says which."""
