"""Settings the benchmark server runs with: Patron's own, plus persistent connections.

``patron serve`` keeps database connections open between requests (the architecture notes a
new connection per request cost 11x in throughput). ``config.env`` sets ``CONN_MAX_AGE`` for
PostgreSQL URLs; where a database entry does not set it (the SQLite default), the
benchmark sets it here so both databases are measured the way production serves them.
"""

import os

from config.settings import *  # noqa: F403
from config.settings import CACHES, DATABASES

DATABASES["default"].setdefault("CONN_MAX_AGE", 600)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

# `make bench` also measures sign-ins with other cache backends, to show what the shared
# cache costs: PATRON_BENCH_CACHE=locmem (per process: the floor), =db (Django's database
# cache in the same database, table made by createcachetable) or a Redis URL given in
# PATRON_CACHE_URL by the benchmark itself. A per-run key prefix keeps runs apart.
_bench_cache = os.environ.get("PATRON_BENCH_CACHE")
if _bench_cache == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _bench_cache == "db":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "bench_cache",
        }
    }
if os.environ.get("PATRON_BENCH_CACHE_PREFIX"):
    CACHES["default"]["KEY_PREFIX"] = os.environ["PATRON_BENCH_CACHE_PREFIX"]
