"""Migrating an unreachable database is the store's one-line error, not the driver's traceback."""

import pytest

from store.exceptions import StoreUnavailableError
from store.migrate import upgrade


def test_an_unreachable_server_is_store_unavailable_with_the_password_hidden():
    with pytest.raises(
        StoreUnavailableError, match=r"unreachable at postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x"
    ):
        upgrade("postgresql+psycopg://u:secret@127.0.0.1:1/x?connect_timeout=2")
