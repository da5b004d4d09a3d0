"""The public API is exactly what bridges/__init__.py lists, sorted, and every name resolves."""

import subprocess
import sys

import bridges


def test_all_is_sorted_and_unique() -> None:
    assert list(bridges.__all__) == sorted(set(bridges.__all__))


def test_every_public_name_resolves() -> None:
    for name in bridges.__all__:
        assert getattr(bridges, name) is not None, name


def test_no_unlisted_public_names() -> None:
    for name in bridges.__all__:
        getattr(bridges, name)
    public = {name for name in vars(bridges) if not name.startswith("_")}
    modules = {name for name, value in vars(bridges).items() if type(value) is type(bridges)}
    assert public - modules - {"annotations", "importlib", "TYPE_CHECKING", "Any"} == set(bridges.__all__) - {
        "__version__"
    }


def test_unknown_names_raise_attribute_error() -> None:
    try:
        bridges.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_lazy() -> None:
    """`import bridges` must not pull in the server, asyncio or the adapters (CGI start-up cost)."""
    code = (
        "import sys, bridges; print(sorted(m for m in sys.modules if m.startswith(('bridges.', 'asyncio'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['bridges._version']"


def test_errors_share_one_root() -> None:
    for name in bridges.__all__:
        value = getattr(bridges, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, bridges.BridgeError), name
    assert issubclass(bridges.ClientDisconnected, OSError)
