"""argon2id with at least OWASP's parameters (19 MiB, t=2, p=1)."""

from django.contrib.auth.hashers import Argon2PasswordHasher


class PatronArgon2PasswordHasher(Argon2PasswordHasher):
    algorithm = "argon2"
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
