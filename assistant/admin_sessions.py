"""Admin sessions: tokens with a lifetime and an idle timeout, logout, upload tickets, and a global
backoff after failed logins. No credentials here: the caller says whether a login was right.

* A session ends ``lifetime_s`` after login, or after ``idle_s`` without an admin action (the
  admin tab's status polling is not an action), or at logout. Ended sessions and their upload
  tickets are removed whenever sessions are looked at, so the table never grows without bound.
* Failed logins are counted for the whole app, not per caller (an attacker has many addresses):
  after ``failures_allowed`` in a row, every further try is refused without checking the
  password, with "too many failed logins, wait N s", for a wait that doubles with each failure
  up to ``max_backoff_s``. A successful login resets the count.
* An upload ticket (assistant/web_guards.py) belongs to one session and ends with it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass


class SessionRefused(PermissionError):
    """No valid session, or logins are paused; the message says which."""


@dataclass
class _Session:
    expires: float
    last_used: float


class AdminSessions:
    def __init__(self, *, lifetime_s: float, idle_s: float, failures_allowed: int, backoff_s: float,
                 max_backoff_s: float, clock=time.monotonic):
        self.lifetime_s, self.idle_s = lifetime_s, idle_s
        self.failures_allowed, self.backoff_s, self.max_backoff_s = failures_allowed, backoff_s, max_backoff_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._tickets: dict[str, str] = {}  # upload ticket -> its session's token
        self._failures = 0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    # --- logging in and out ------------------------------------------------------------------
    def refuse_while_paused(self) -> None:
        """Before checking a password: refuse at once while logins are paused."""
        wait = self._paused_until - self._clock()
        if wait > 0:
            raise SessionRefused(f"too many failed logins, wait {wait:.0f} s")

    def failed(self) -> None:
        """A wrong login: counted; past the allowance, logins pause for a doubling wait."""
        with self._lock:
            self._failures += 1
            extra = self._failures - self.failures_allowed
            if extra >= 0:
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** min(extra, 30))
                self._paused_until = self._clock() + wait

    def open(self) -> str:
        """A right login: a new session's token."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._failures, self._paused_until = 0, 0.0
            self._prune(now)
            self._sessions[token] = _Session(now + self.lifetime_s, now)
        return token

    def close(self, token: str | None) -> bool:
        """Log out: the session and its upload tickets end now. False when there was none."""
        with self._lock:
            ended = self._sessions.pop(token or "", None) is not None
            self._tickets = {t: owner for t, owner in self._tickets.items() if owner != token}
        return ended

    # --- checking ----------------------------------------------------------------------------
    def check(self, token: str | None, *, activity: bool = True) -> None:
        """Raise SessionRefused unless ``token`` is a live session; an activity keeps it from idling out."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            session = self._sessions.get(token or "")
            if session is None:
                raise SessionRefused("admin login required")
            if activity:
                session.last_used = now

    def ticket(self, token: str) -> str:
        self.check(token)
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._tickets[ticket] = token
        return ticket

    def ticket_valid(self, ticket: str | None) -> bool:
        now = self._clock()
        with self._lock:
            self._prune(now)
            owner = self._tickets.get(ticket or "")
            return owner is not None and owner in self._sessions

    def count(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._sessions)

    def _prune(self, now: float) -> None:
        ended = [t for t, s in self._sessions.items() if now >= s.expires or now - s.last_used >= self.idle_s]
        for token in ended:
            del self._sessions[token]
        if ended:
            self._tickets = {t: owner for t, owner in self._tickets.items() if owner in self._sessions}
