"""The connection timeouts store.db adds: defaults where the URL is silent, the URL's own otherwise."""

import pytest

from store.db import connect_args, server_keepalives


def test_every_timeout_is_set_when_the_url_names_none():
    args = connect_args("postgresql+psycopg://u@db.internal:5432/intentloop")
    assert args["connect_timeout"] == 10 and args["tcp_user_timeout"] == 30_000
    assert (args["keepalives"], args["keepalives_idle"], args["keepalives_count"]) == (1, 10, 3)
    assert "options" not in args  # PgBouncer refuses unknown startup parameters: SET after connecting
    assert "tcp_keepalives_idle = 10" in str(server_keepalives("postgresql+psycopg://u@db.internal/x"))


@pytest.mark.parametrize(
    ("query", "absent"),
    [
        ("connect_timeout=3", "connect_timeout"),
        ("tcp_user_timeout=0", "tcp_user_timeout"),
        ("keepalives=0", "keepalives"),
    ],
)
def test_a_parameter_in_the_url_wins(query, absent):
    args = connect_args(f"postgresql+psycopg://u@h/db?{query}")
    assert absent not in args  # SQLAlchemy passes the URL's own value to libpq untouched
    assert len(args) == 5


def test_the_urls_own_options_replace_the_server_keepalives():
    assert server_keepalives("postgresql+psycopg://u@h/db?options=-c%20statement_timeout%3D0") is None
