"""Handlers whose raised errors pyarrow would answer with the server's Python traceback.

pyarrow (26.0) maps a `FlightError` raised by most server handlers to its status, but not one raised
by `get_schema` or `list_flights`: those callbacks convert any exception generically, to status
UNKNOWN with a detail holding `traceback.format_exception` of every frame it passed: the server's
file paths and source lines, whatever refused the call (a wrong credential included). So such a
handler is split: `<name>_outcome` returns its result or the exception to answer with (built fresh,
never raised through our frames), and the method pyarrow calls is compiled under a neutral file
name, where linecache finds no source: the detail then names only `<lineage-guard>` and the message.

Example:
    >>> class S:
    ...     def ping_outcome(self, x):
    ...         return ValueError("no") if x < 0 else x
    ...     ping = untraced("ping", "ping_outcome")
    >>> S().ping(2)
    2
"""

from __future__ import annotations

from collections.abc import Callable

_FILE = "<lineage-guard>"
_SOURCE = """
def {name}(self, *args):
    outcome = self.{outcome}(*args)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
"""


def untraced(name: str, outcome: str) -> Callable:
    """A method `name(self, *args)` that returns `self.<outcome>(*args)` or raises it if it is an exception."""
    if not (name.isidentifier() and outcome.isidentifier()):
        raise ValueError("untraced takes method names")
    namespace: dict = {}
    exec(compile(_SOURCE.format(name=name, outcome=outcome), _FILE, "exec"), namespace)  # noqa: S102 - fixed text
    return namespace[name]
