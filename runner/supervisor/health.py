"""An NI task's health: exits, restarts with backoff, and the NI marked failed.

A task that exits is started again after a backoff (0.5 s doubling to 30 s); a
task that stays up STABLE seconds resets the count; after FAILED_AFTER exits in
a row the NI is `failed` and not restarted until its next apply.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
FAILED_AFTER = 5  # exits in a row without staying up STABLE seconds
STABLE = 30.0


@dataclass
class Health:
    restarts: int = 0
    last_exit: int | None = None
    failures_in_row: int = 0
    last_start: float = 0.0
    next_try: float = 0.0  # monotonic time of the next start; 0: none due
    failed_reason: str = ""
    last_error: str = ""

    def exited(self, status: int, now: float) -> float | None:
        """Record an exit; the delay before the next start, or None if the NI is failed now."""
        self.last_exit = status
        up_for = now - self.last_start
        self.failures_in_row = 1 if up_for > STABLE else self.failures_in_row + 1
        if self.failures_in_row >= FAILED_AFTER:
            self.failed_reason = (f"task exited {self.failures_in_row} times in a row "
                                  f"(last status {status}); not restarted")
            self.next_try = 0.0
            return None
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (self.failures_in_row - 1))
        self.next_try = now + delay
        self.restarts += 1
        return delay

    def started(self, now: float) -> None:
        self.last_start = now
        self.next_try = 0.0

    def failed_start(self, now: float) -> None:
        """A start that failed: try again later, backing off."""
        self.next_try = now + min(BACKOFF_MAX, 2.0 * max(1, self.failures_in_row))

    def held(self, now: float) -> str:
        """Why the task must not be (re)started now, or ""."""
        if self.failed_reason:
            return self.failed_reason
        if self.next_try > now:
            return f"restart in {self.next_try - now:.1f}s"
        return ""
