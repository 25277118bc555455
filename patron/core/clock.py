"""The clock seam.

Services ask ``clock.now()`` instead of calling ``timezone.now()`` directly, and business
dates come from ``clock.today()`` in the configured time zone (Asia/Shanghai by default).
Tests move time with time-machine, which this honours.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def now() -> dt.datetime:
    return timezone.now()


def today() -> dt.date:
    return timezone.localdate(now())


def local(moment: dt.datetime) -> dt.datetime:
    return timezone.localtime(moment)
