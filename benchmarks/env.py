"""Print the environment of the last benchmark run's database, to examine it afterwards.

eval "$(.venv/bin/python -m benchmarks.env postgresql)"
.venv/bin/python manage.py shell
"""

from __future__ import annotations

import json
import os
import shlex
import sys

from benchmarks import server
from benchmarks.run import DEFAULT_POSTGRES, ROOT


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "postgresql"
    var_root = ROOT / "var" / "bench"
    if name == "sqlite":
        target = server.sqlite_target(var_root)
    else:
        url = os.environ.get("PATRON_BENCH_DATABASE_URL", DEFAULT_POSTGRES)
        target = server.postgres_target(url, var_root)
    keys = json.loads((target.var_dir / "keys.json").read_text())
    env = server.django_env(target, keys)
    for key, value in env.items():
        if key.startswith("PATRON_") or key == "DJANGO_SETTINGS_MODULE":
            print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
