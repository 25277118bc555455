"""Bulk-load benchmark members set-based: ``python -m benchmarks.load``.

100,000 members are not registered one by one (that would measure registration, and take
an hour of argon2): users and members are written with ``bulk_create`` in batches, with one
precomputed password hash, precomputed blind indexes, and the encrypted fields encrypted by
their model field as each batch is written. The first ``--signin`` members have accepted
the current consent documents so they can sign in; every member is active with a verified
phone. Writes a JSON summary (API key, sign-in usernames, phones) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import django

SIGNIN_PASSWORD = "Bench-sign-in-passphrase-7c4e"
DOCUMENTS = [("terms", "1.0"), ("privacy", "1.0")]
LOADED_PREFIX = "+86138"  # loaded members; registrations use +86139 (see run.py)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--signin", type=int, default=600)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from patron.api.keys import SCOPES, create_api_key
    from patron.core import clock, ids
    from patron.core.audit import Actor
    from patron.core.crypto import blind_index
    from patron.members import normalize
    from patron.members.models import Consent, ConsentDocument, Member, User

    rng = random.Random(args.seed)
    started = time.perf_counter()
    now = clock.now()

    with transaction.atomic():
        documents = [
            ConsentDocument.objects.get_or_create(
                kind=kind,
                version=version,
                defaults={"title": f"{kind} {version}", "body": "Benchmark document."},
            )[0]
            for kind, version in DOCUMENTS
        ]
    key = create_api_key(name="benchmark", scopes=sorted(SCOPES), actor=Actor.system())

    password_hash = make_password(SIGNIN_PASSWORD)
    phones = [f"{LOADED_PREFIX}{n:08d}" for n in rng.sample(range(10**8), args.members)]
    for phone in rng.sample(phones, min(20, len(phones))):
        # The benchmark's phone strings must be exactly what normalize.phone produces, or
        # the blind indexes would not match what the API looks up.
        assert normalize.phone(phone) == phone, phone
    numbers: set[str] = set()
    while len(numbers) < args.members:
        numbers.add(ids.random_member_number())
    number_list = sorted(numbers, key=lambda _: rng.random())

    for start in range(0, args.members, args.batch):
        stop = min(start + args.batch, args.members)
        with transaction.atomic():
            users = User.objects.bulk_create(
                [
                    User(
                        username=f"bench{i:06d}",
                        password=password_hash,
                        password_changed_at=now,
                        date_joined=now,
                    )
                    for i in range(start, stop)
                ]
            )
            members = Member.objects.bulk_create(
                [
                    Member(
                        user=user,
                        number=number_list[i],
                        kind=Member.Kind.INDIVIDUAL,
                        status=Member.Status.ACTIVE,
                        name=f"会员{i:06d}",
                        phone=phones[i],
                        phone_index=blind_index(phones[i], "phone"),
                        phone_verified_at=now,
                        birth_date="1990-01-01",
                        created_at=now,
                    )
                    for i, user in zip(range(start, stop), users, strict=True)
                ]
            )
            pairs = zip(range(start, stop), members, strict=True)
            signers = [m for i, m in pairs if i < args.signin]
            Consent.objects.bulk_create(
                [
                    Consent(member=m, document=d, granted=True, channel="api", recorded_at=now)
                    for m in signers
                    for d in documents
                ]
            )
    with connection.cursor() as cursor:
        # PostgreSQL: VACUUM too, as after any bulk load, so that the autovacuum the load
        # would trigger (and the hint bits the first readers would set) does not land in
        # the middle of the measured sign-ins and lookups.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")

    args.out.write_text(
        json.dumps(
            {
                "api_key": key.secret,
                "password": SIGNIN_PASSWORD,
                "signin_usernames": [
                    f"bench{i:06d}" for i in range(min(args.signin, args.members))
                ],
                "phones": phones,
                "accepted": [f"{kind}@{version}" for kind, version in DOCUMENTS],
                "seconds": time.perf_counter() - started,
                "members": Member.objects.count(),
            }
        )
    )


if __name__ == "__main__":
    main()
