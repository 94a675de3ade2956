"""``tests/postgres.py``: an unreachable server fails a run that requires PostgreSQL."""

from __future__ import annotations

import pytest

from tests import postgres

CLOSED = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
UNREACHABLE = f"PostgreSQL unreachable at {CLOSED}: (psycopg.OperationalError)"


def _outcome() -> BaseException:
    """What entering ``fresh_database`` raised: a skip or a failure, caught here so that a
    skip cannot pass for this test's own outcome."""
    try:
        with postgres.fresh_database("mess_unreachable"):
            pass
    except (pytest.fail.Exception, pytest.skip.Exception) as exc:
        return exc
    raise AssertionError("entered a database on a closed port")


@pytest.mark.parametrize(("ci", "explicit_url"), [("true", False), ("", True), ("1", True)])
def test_an_unreachable_server_fails_when_postgres_is_required(
    monkeypatch: pytest.MonkeyPatch, ci: str, explicit_url: bool
) -> None:
    monkeypatch.setenv("CI", ci)
    if explicit_url:
        monkeypatch.setenv("MESS_TEST_POSTGRES_URL", CLOSED)
    else:
        monkeypatch.delenv("MESS_TEST_POSTGRES_URL", raising=False)
        monkeypatch.setattr(postgres, "DEFAULT_URL", CLOSED)
    outcome = _outcome()
    assert isinstance(outcome, pytest.fail.Exception), outcome
    assert UNREACHABLE in str(outcome) and "required" in str(outcome)


def test_an_unreachable_server_skips_a_developer_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MESS_TEST_POSTGRES_URL", raising=False)
    monkeypatch.setattr(postgres, "DEFAULT_URL", CLOSED)
    outcome = _outcome()
    assert isinstance(outcome, pytest.skip.Exception), outcome
    assert UNREACHABLE in str(outcome)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESS_TEST_POSTGRES_URL", "")
    monkeypatch.setenv("CI", "")
    assert postgres.server_url() == postgres.DEFAULT_URL
    assert not postgres.required()
