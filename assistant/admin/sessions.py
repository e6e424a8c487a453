"""Admin sessions: tokens with a lifetime and an idle timeout, logout, upload tickets, and the
throttling of password checks. No credentials here: the caller says whether a login was right.

* A session ends ``lifetime_s`` after login, or after ``idle_s`` without an admin action (the
  admin tab's status polling is not an action), or at logout. Ended sessions and their upload
  tickets are removed whenever sessions are looked at, so the table never grows without bound.
* Failed logins are counted per client address: after ``failures_allowed`` in a row from one
  address, its tries are refused without checking the password ("too many failed logins from
  this address, wait N s"), for a wait that doubles with each further failure up to
  ``max_backoff_s``; a right login from it resets its count. Other addresses are not held by it,
  so nobody can keep the admin out by failing on purpose (a pause for the whole app let one wrong
  try every 15 minutes do that). An address is forgotten twice ``max_backoff_s`` after its last
  failure (so at least ``max_backoff_s`` after its pause ended); at most MAX_ADDRESSES are
  remembered.
* The global ceiling, against guessing from many addresses: ``budget`` password checks in any
  ``budget_window_s``, all addresses that have not logged in before together (a check that turns
  out right gives its place back, so wrong ones spend it). Past it they are refused unchecked
  until the oldest check leaves the window ("too many failed logins from many addresses, wait
  N s", N at most the window). It is a budget, not a pause driven by failures: guessing gets at
  most ``budget`` tries per window however many addresses it uses (30 a minute is 43,200 a day,
  against a password of at least 12 characters), but nothing builds up, so the admin gets in
  within one window after an attack stops, and the last MAX_TRUSTED addresses that logged in are
  held only by their own failures, so even a sustained many-address attack cannot keep the admin
  out from an address used before (only a first login from a new address waits for it to end).
* The address is the client's as the server sees it; behind a reverse proxy on this machine, the
  one the proxy forwards (X-Forwarded-For, which uvicorn trusts from loopback only). A proxy that
  forwards none makes every caller one address: a pause for all, as before this rule.
* An upload ticket (assistant/web/guards.py) belongs to one session and ends with it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_ADDRESSES = 10_000  # addresses with recent failures remembered; the budget bounds how fast new ones come
MAX_TRUSTED = 64  # addresses that logged in, exempt from the global budget
UNKNOWN_ADDRESS = "(no address)"  # a caller in this process, or a request without a client address


class SessionRefused(PermissionError):
    """No valid session, or logins are paused; the message says which."""


@dataclass
class _Session:
    expires: float
    last_used: float


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    paused_until: float = 0.0


@dataclass(frozen=True)
class LoginAttempt:
    """A password check that was let through: whose, and the place it holds in the global budget
    (None: an address that logged in before, outside the budget)."""
    address: str
    place: float | None


class AdminSessions:
    def __init__(self, *, lifetime_s: float, idle_s: float, failures_allowed: int, backoff_s: float,
                 max_backoff_s: float, budget: int = 30, budget_window_s: float = 60.0, clock=time.monotonic):
        self.lifetime_s, self.idle_s = lifetime_s, idle_s
        self.failures_allowed, self.backoff_s, self.max_backoff_s = failures_allowed, backoff_s, max_backoff_s
        self.budget, self.budget_window_s = budget, budget_window_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._tickets: dict[str, str] = {}  # upload ticket -> its session's token
        self._failures: OrderedDict[str, _Failures] = OrderedDict()  # oldest last failure first
        self._checks: deque[float] = deque()  # when each check in the budget window was let through
        self._trusted: OrderedDict[str, float] = OrderedDict()  # address -> its last right login
        self._lock = threading.Lock()

    # --- logging in and out ------------------------------------------------------------------
    def admit(self, address: str | None) -> LoginAttempt:
        """Before checking a password: refuse at once while ``address`` is paused, or while the
        global budget is spent and the address has not logged in before."""
        key, now = address or UNKNOWN_ADDRESS, self._clock()
        with self._lock:
            self._forget(now)
            failures = self._failures.get(key)
            if failures is not None and failures.paused_until > now:
                raise SessionRefused(f"too many failed logins from this address, wait {failures.paused_until - now:.0f} s")
            if key in self._trusted:
                return LoginAttempt(key, None)
            if len(self._checks) >= self.budget:
                wait = self._checks[0] + self.budget_window_s - now
                raise SessionRefused(f"too many failed logins from many addresses, wait {wait:.0f} s")
            self._checks.append(now)
            return LoginAttempt(key, now)

    def failed(self, attempt: LoginAttempt) -> None:
        """A wrong login: counted for its address; past the allowance, that address pauses for a
        doubling wait. Its place in the global budget stays spent."""
        now = self._clock()
        with self._lock:
            failures = self._failures.pop(attempt.address, None) or _Failures()
            failures.count, failures.last = failures.count + 1, now
            extra = failures.count - self.failures_allowed
            if extra >= 0:
                failures.paused_until = now + min(self.max_backoff_s, self.backoff_s * 2 ** min(extra, 30))
            self._failures[attempt.address] = failures  # at the end: the newest failure
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def _forget(self, now: float) -> None:
        """Drop checks that left the budget window and addresses whose last failure is old."""
        while self._checks and self._checks[0] <= now - self.budget_window_s:
            self._checks.popleft()
        while self._failures and next(iter(self._failures.values())).last <= now - 2 * self.max_backoff_s:
            self._failures.popitem(last=False)

    def open(self, attempt: LoginAttempt | None = None) -> str:
        """A right login: a new session's token. Its address's failures are cleared, its place
        in the global budget given back, and the address trusted from now on."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            if attempt is not None:
                self._welcome(attempt, now)
            self._prune(now)
            self._sessions[token] = _Session(now + self.lifetime_s, now)
        return token

    def _welcome(self, attempt: LoginAttempt, now: float) -> None:
        self._failures.pop(attempt.address, None)
        if attempt.place is not None and attempt.place in self._checks:
            self._checks.remove(attempt.place)
        self._trusted[attempt.address] = now
        self._trusted.move_to_end(attempt.address)
        while len(self._trusted) > MAX_TRUSTED:
            self._trusted.popitem(last=False)

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
