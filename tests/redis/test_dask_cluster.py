"""A real Dask ``distributed`` cluster, worker processes with HOMEs of their own, sharing only Redis.

Tasks get a pickled ``DeviceAuth(cache="redis://...")`` and call the protected API across several
expiries of the rotating, reuse-detecting test server: one refresh per expiry for the whole cluster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_workers

from deviceauth import DeviceAuth
from oidc_server import ACCESS_TTL, Approver, OidcServer

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration

WORKERS = 4
TASKS = 8


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcServer]:
    with OidcServer(mode="keycloak", access_ttl=ACCESS_TTL) as server:
        yield server


def test_a_dask_cluster_refreshes_once_per_expiry(oidc: OidcServer, redis_url: str, tmp_path: Path) -> None:
    url = redis_url
    options = {"scope": "openid", "cache": url, "open_browser": False}
    first = DeviceAuth(oidc.issuer, "client-tools", interactive=True, prompt=Approver(oidc), **options).get_token()
    auth = DeviceAuth(oidc.issuer, "client-tools", interactive=False, **options)
    with (
        distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=2, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        homes = client.run(redis_workers.own_home, str(tmp_path / "homes"))
        assert len(homes) == WORKERS
        oidc.reset_stats()
        stop = tmp_path / "stop"
        futures = client.map(
            redis_workers.call_api_until,
            [auth] * TASKS,
            [oidc.api_url()] * TASKS,
            [time.time() + 60] * TASKS,
            [0.05] * TASKS,
            [5000] * TASKS,
            [str(stop)] * TASKS,
            pure=False,
        )
        deadline = time.monotonic() + 60
        while oidc.stats()["token"].get("refresh_token", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(ACCESS_TTL / 2)
        stop.touch()
        results = client.gather(futures)
    stats = oidc.stats()
    refreshes = stats["token"].get("refresh_token", 0)
    tokens = set().union(*(r["tokens"] for r in results))
    assert sum(r["failed"] for r in results) == 0, [e for r in results for e in r["errors"]][:5]
    assert len({r["home"] for r in results}) > 1  # tasks ran in several worker processes, each its own HOME
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["device_authorization"] == 0
    assert refreshes >= 3
    assert refreshes == len(tokens - {hashlib.sha256(first.encode()).hexdigest()})
