"""Load an app from a target string: `module:attr`, `package.module:attr.sub` or `path/to/file.py:attr`.

The current directory is importable, as with uvicorn. Every failure is a `ConfigurationError`
with one readable sentence, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ._exceptions import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["import_from_string"]


def import_from_string(target: str) -> Any:
    """Return the object `target` names, importing its module (or file) first."""
    module_part, sep, attr_part = target.rpartition(":")
    if not sep or not module_part or not attr_part:
        raise ConfigurationError(
            f"target {target!r} must be 'module:attribute' or 'path/to/file.py:attribute'"
        )
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(module_part)
    else:
        module = _import_module(module_part)
    instance: Any = module
    for name in attr_part.split("."):
        try:
            instance = getattr(instance, name)
        except AttributeError:
            raise ConfigurationError(f"attribute {attr_part!r} not found in module {module_part!r}") from None
    return instance


def _import_module(name: str) -> Any:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == name or name.startswith(exc.name + ".")):
            raise ConfigurationError(f"could not import module {name!r}") from None
        raise ConfigurationError(f"importing {name!r} failed: {exc}") from exc


def _import_file(path: str) -> Any:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise ConfigurationError(f"no such file: {path!r}")
    directory = os.path.dirname(full)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # Let the file import its siblings.
    name = os.path.splitext(os.path.basename(full))[0]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise ConfigurationError(f"importing {path!r} failed: {exc}") from exc
    except BaseException:
        del sys.modules[name]
        raise
    return module
