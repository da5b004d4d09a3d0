"""Shared fixtures. Real web servers are found here: a test that needs one skips locally when it is
missing, but fails under CI=true (CI installs them, so a missing one is a broken CI, never a skip)."""

from __future__ import annotations

import os
import shutil

import pytest

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def find_binary(*names: str) -> str:
    """The path of the first of `names` installed; skip (locally) or fail (CI) if none is."""
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return found
    message = f"{' or '.join(names)} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI must run this test (.ci/run installs it)")
    pytest.skip(message)
    raise AssertionError("unreachable")
