"""The public API: a sorted ``__all__`` of names that exist, and a light import."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import deviceauth


def test_all_is_sorted_and_unique() -> None:
    assert list(deviceauth.__all__) == sorted(deviceauth.__all__)
    assert len(set(deviceauth.__all__)) == len(deviceauth.__all__)


def test_every_exported_name_exists() -> None:
    for name in deviceauth.__all__:
        assert hasattr(deviceauth, name), name


def test_public_names_claim_the_package() -> None:
    for name in deviceauth.__all__:
        member = getattr(deviceauth, name)
        if isinstance(member, type) or callable(member):
            assert member.__module__ == "deviceauth", name


def test_all_lists_exactly_the_public_names() -> None:
    # Both ways, as httpx checks: nothing public is missing from __all__, nothing private leaks.
    present = {
        name
        for name, member in vars(deviceauth).items()
        if not name.startswith("_") and not isinstance(member, types.ModuleType) and name != "annotations"
    }
    assert present | {"__version__"} == set(deviceauth.__all__)


@pytest.mark.parametrize("module", ["deviceauth.store", "deviceauth.urllib3", "deviceauth.httpx", "deviceauth.httpx2"])
def test_public_submodules_export_what_they_define(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), (module, name)


def test_import_does_not_pull_in_optional_http_clients() -> None:
    code = "import sys, deviceauth\nprint(sorted(m for m in ('httpx', 'httpx2', 'IPython') if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""
