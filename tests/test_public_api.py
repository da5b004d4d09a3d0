"""The public API is exactly what bridges/__init__.py lists, sorted, and every name resolves."""

import bridges


def test_all_is_sorted_and_unique() -> None:
    assert list(bridges.__all__) == sorted(set(bridges.__all__))


def test_every_public_name_resolves() -> None:
    for name in bridges.__all__:
        assert getattr(bridges, name) is not None, name


def test_no_unlisted_public_names() -> None:
    public = {name for name in vars(bridges) if not name.startswith("_")}
    modules = {name for name, value in vars(bridges).items() if type(value) is type(bridges)}
    assert public - modules == set(bridges.__all__) - {"__version__"}


def test_errors_share_one_root() -> None:
    for name in bridges.__all__:
        value = getattr(bridges, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, bridges.BridgeError), name
    assert issubclass(bridges.ClientDisconnected, OSError)
