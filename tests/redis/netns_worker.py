"""One "machine" of the network-namespace test: ``python netns_worker.py AUTH_PICKLE API_URL STOP RESULT HOME``.

Runs inside ``ip netns exec``: its own network stack, HOME and cache dir; it shares only Redis
(over the namespace's veth link) with the others. Writes what reached the API as JSON.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis_workers


def main(auth_pickle: str, api_url: str, stop: str, result: str, home: str) -> None:
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = home
    os.environ["XDG_CACHE_HOME"] = str(Path(home, ".cache"))
    auth = pickle.loads(Path(auth_pickle).read_bytes())  # noqa: S301 (written by the test)
    tally = redis_workers.call_api_until(auth, api_url, time.time() + 90, 0.05, 5000, stop)
    tally["tokens"] = sorted(tally["tokens"])
    tally["cache_dir_used"] = Path(home, ".cache", "deviceauth").exists()
    Path(result).write_text(json.dumps(tally))


if __name__ == "__main__":
    main(*sys.argv[1:6])
