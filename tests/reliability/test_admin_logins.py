"""Who a failed admin login holds back (issue 33, item 13).

Failures pause only the address they came from, so nobody can keep the admin out by failing on
purpose; a global budget of password checks (addresses that never logged in, together) stops
guessing from many addresses without a pause that outlives the attack. The rules are checked on
the session table with a clock the tests move (pure logic), then through the admin service and
through the running app, where a loopback client's X-Forwarded-For stands for other addresses
(uvicorn takes a client's address from it only from loopback: a reverse proxy on this machine).
"""

from __future__ import annotations

import pytest

from assistant.admin import sessions as admin_sessions
from assistant.admin.sessions import AdminSessions, SessionRefused
from conftest import ADMIN_PASSWORD


class Table:
    """A session table on a clock the test moves; ``login`` plays AdminService.login's part."""

    def __init__(self, **limits):
        self.now = 1000.0
        rules = dict(lifetime_s=3600, idle_s=600, failures_allowed=3, backoff_s=30, max_backoff_s=900, budget=10,
                     budget_window_s=60) | limits
        self.sessions = AdminSessions(clock=lambda: self.now, **rules)
        self.checked = 0  # passwords actually checked: what a guesser gets

    def login(self, address: str, right: bool) -> str:
        """"token", "wrong", or the refusal's text."""
        try:
            attempt = self.sessions.admit(address)
        except SessionRefused as exc:
            return str(exc)
        self.checked += 1
        if not right:
            self.sessions.failed(attempt)
            return "wrong"
        self.sessions.open(attempt)
        return "token"


def test_an_address_that_fails_is_paused_and_another_still_logs_in():
    table = Table()
    assert [table.login("10.0.0.1", right=False) for _ in range(3)] == ["wrong"] * 3
    assert table.login("10.0.0.1", right=True) == "too many failed logins from this address, wait 30 s"
    assert table.login("10.0.0.2", right=True) == "token"  # the pause is the failing address's alone
    table.now += 30
    assert table.login("10.0.0.1", right=False) == "wrong"  # its pause is over; one more failure...
    assert table.login("10.0.0.1", right=True) == "too many failed logins from this address, wait 60 s"  # ...doubles it
    table.now += 60
    assert table.login("10.0.0.1", right=True) == "token"  # a right login resets its count
    assert table.login("10.0.0.1", right=False) == "wrong"
    assert table.login("10.0.0.1", right=True) == "token"


def test_a_failing_address_cannot_lock_out_a_right_login_from_elsewhere():
    """What kept the admin out before: one wrong try every 15 minutes, forever."""
    table = Table()
    for _ in range(200):  # 200 x 15 minutes: the attacker's address fails whenever it is let in
        for _ in range(5):
            table.login("203.0.113.9", right=False)
        assert table.login("198.51.100.1", right=True) == "token"
        table.now += 15 * 60


def test_the_global_budget_stops_a_many_address_attack():
    table = Table(budget=10, budget_window_s=60)
    minutes = 30
    refused = 0
    for second in range(minutes * 60):  # a new address every second, each trying 20 times
        table.now += 1
        for _ in range(20):
            said = table.login(f"10.{second // 256}.{second % 256}.1", right=False)
            refused += said.startswith("too many failed logins from many addresses")
    # 36,000 tries: at most 10 passwords checked per minute, however many addresses try
    assert table.checked <= 10 * (minutes + 1) and refused > 30_000


def test_the_global_budget_lets_the_admin_in_after_an_attack_and_known_addresses_during_it():
    table = Table(budget=5, budget_window_s=60)
    assert table.login("192.0.2.7", right=True) == "token"  # the admin's usual address, earlier
    for number in range(5):
        table.login(f"10.0.0.{number}", right=False)
    said = table.login("192.0.2.99", right=True)  # a new address, during the attack: waits
    assert said == "too many failed logins from many addresses, wait 60 s"
    assert table.login("192.0.2.7", right=True) == "token"  # an address that logged in before does not
    table.now += 60  # the attack stopped: within one window, a new address gets in
    assert table.login("192.0.2.99", right=True) == "token"


def test_a_right_login_gives_its_place_in_the_budget_back():
    table = Table(budget=2)
    assert [table.login(f"10.1.0.{n}", right=True) for n in range(5)] == ["token"] * 5
    assert [table.login(f"10.2.0.{n}", right=False) for n in range(3)] == ["wrong", "wrong",
                                                                           "too many failed logins from many addresses, wait 60 s"]


def test_the_remembered_addresses_are_bounded(monkeypatch):
    monkeypatch.setattr(admin_sessions, "MAX_ADDRESSES", 50)
    monkeypatch.setattr(admin_sessions, "MAX_TRUSTED", 4)
    table = Table(budget=10**6)
    for number in range(500):
        table.login(f"10.0.{number // 256}.{number % 256}", right=False)
        table.login(f"10.9.{number // 256}.{number % 256}", right=True)
    assert len(table.sessions._failures) == 50 and len(table.sessions._trusted) == 4
    table.now += 1800  # a failure 30 minutes old is forgotten (its pause ended at least 15 minutes ago)
    table.login("192.0.2.1", right=True)
    assert len(table.sessions._failures) == 0


# --- through the admin service and the running app -------------------------------------------------

def test_the_admin_service_pauses_only_the_failing_address(running_app, tmp_path):
    from pydantic import SecretStr

    from assistant.admin.service import AdminDenied, AdminService
    from assistant.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", _env_file=None, admin_password=SecretStr(ADMIN_PASSWORD),
                             admin_login_failures_allowed=3, admin_login_backoff_s=60)
    admin = AdminService(settings, running_app.pipeline, None)
    try:
        for _ in range(3):
            with pytest.raises(AdminDenied, match="wrong admin username or password"):
                admin.login("admin", "guess " + "x" * 20, "10.0.0.1")
        with pytest.raises(AdminDenied, match=r"too many failed logins from this address, wait (59|60) s"):
            admin.login("admin", ADMIN_PASSWORD, "10.0.0.1")  # refused before the password is checked
        assert admin.login("admin", ADMIN_PASSWORD, "10.0.0.2")
    finally:
        admin.jobs.shutdown()


def _client(url: str, address: str):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address})


def test_logins_through_the_app_are_counted_per_client_address(running_app, monkeypatch):
    """The app's own limits are relaxed for the other tests; here its table is one with small ones."""
    settings = running_app.pipeline.settings
    monkeypatch.setattr(running_app.admin, "sessions", AdminSessions(
        lifetime_s=settings.admin_session_s, idle_s=settings.admin_idle_timeout_s, failures_allowed=2, backoff_s=600,
        max_backoff_s=900, budget=4, budget_window_s=600))
    admin_desk, attacker = _client(running_app.url, "192.0.2.7"), _client(running_app.url, "203.0.113.9")
    assert admin_desk.predict("admin", ADMIN_PASSWORD, api_name="/admin_login")  # the usual address, earlier
    for _ in range(2):
        with pytest.raises(Exception, match="wrong admin username or password"):
            attacker.predict("admin", "guess " + "x" * 20, api_name="/admin_login")
    with pytest.raises(Exception, match="too many failed logins from this address"):
        attacker.predict("admin", ADMIN_PASSWORD, api_name="/admin_login")
    assert _client(running_app.url, "198.51.100.1").predict("admin", ADMIN_PASSWORD, api_name="/admin_login")
    for number in range(2):  # more addresses spend the rest of the budget (the two right logins gave theirs back)
        with pytest.raises(Exception, match="wrong admin username or password"):
            _client(running_app.url, f"10.0.0.{number}").predict("admin", "guess " + "x" * 20, api_name="/admin_login")
    with pytest.raises(Exception, match="too many failed logins from many addresses"):
        _client(running_app.url, "10.0.0.99").predict("admin", ADMIN_PASSWORD, api_name="/admin_login")
    token = admin_desk.predict("admin", ADMIN_PASSWORD, api_name="/admin_login")  # a known address still gets in
    assert admin_desk.predict(token, api_name="/admin_domains")
