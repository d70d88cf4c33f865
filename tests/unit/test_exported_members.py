"""The public API: a sorted ``__all__`` of names that exist, and a light import."""

from __future__ import annotations

import subprocess
import sys

import deviceauth


def test_all_is_sorted_and_unique() -> None:
    assert list(deviceauth.__all__) == sorted(deviceauth.__all__)
    assert len(set(deviceauth.__all__)) == len(deviceauth.__all__)


def test_every_exported_name_exists() -> None:
    for name in deviceauth.__all__:
        assert hasattr(deviceauth, name), name


def test_public_classes_claim_the_package() -> None:
    for name in deviceauth.__all__:
        member = getattr(deviceauth, name)
        if isinstance(member, type):
            assert member.__module__.startswith("deviceauth"), name


def test_import_does_not_pull_in_optional_http_clients() -> None:
    code = "import sys, deviceauth\nprint(sorted(m for m in ('httpx', 'httpx2', 'IPython') if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""
