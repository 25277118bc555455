"""Settings the benchmark server runs with: Patron's own, plus persistent connections.

``patron serve`` keeps database connections open between requests (the architecture notes a
new connection per request cost 11x in throughput). ``config.env`` sets ``CONN_MAX_AGE`` for
PostgreSQL URLs; where a database entry does not set it (the SQLite default), the
benchmark sets it here so both databases are measured the way production serves them.
"""

from config.settings import *  # noqa: F403
from config.settings import DATABASES

DATABASES["default"].setdefault("CONN_MAX_AGE", 600)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
