"""The one error the perf tool reports to its user instead of a traceback."""

from __future__ import annotations


class PerfError(Exception):
    """Something the user can fix (bad option, unknown model, unreachable server):
    the command prints ``error: <message>`` on one line and exits with status 2."""

    @property
    def message(self) -> str:
        return self.args[0]
