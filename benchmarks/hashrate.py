"""Raw argon2id rate at exactly the parameters Patron hashes passwords with.

One process per core, each verifying a hash in a loop for a fixed time: the ceiling that
sign-in throughput is compared with (a sign-in costs one argon2 verification).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import argon2

from patron.core.hashers import PatronArgon2PasswordHasher


def patron_parameters() -> argon2.Parameters:
    """The argon2 parameters of the configured Django hasher, read from the class itself."""
    return PatronArgon2PasswordHasher().params()


def _worker(seconds: float, max_count: int, start, results) -> None:  # type: ignore[no-untyped-def]
    hasher = argon2.PasswordHasher.from_parameters(patron_parameters())
    encoded = hasher.hash("correct horse battery staple")
    hasher.verify(encoded, "correct horse battery staple")  # warm up
    start.wait()
    began = time.perf_counter()
    deadline = began + seconds
    count = 0
    while count < max_count and time.perf_counter() < deadline:
        hasher.verify(encoded, "correct horse battery staple")
        count += 1
    results.put((count, time.perf_counter() - began))


@dataclass(frozen=True)
class HashRate:
    processes: int
    seconds: float
    hashes: int
    per_second: float
    per_second_one_core: float
    parameters: str


def measure(processes: int, seconds: float = 8.0, max_count: int = 100_000) -> HashRate:
    ctx = mp.get_context("fork")
    start = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(seconds, max_count, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.wait(timeout=60)
    measured = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    total = sum(count for count, _ in measured)
    # Each process ran for the same wall time; its own rate, summed, is the machine's rate.
    rate = sum(count / elapsed for count, elapsed in measured)
    params = patron_parameters()
    return HashRate(
        processes=processes,
        seconds=max(elapsed for _, elapsed in measured),
        hashes=total,
        per_second=rate,
        per_second_one_core=rate / processes,
        parameters=(
            f"argon2id v{params.version}, m={params.memory_cost} KiB, t={params.time_cost}, "
            f"p={params.parallelism}, hash {params.hash_len} B, salt {params.salt_len} B"
        ),
    )
