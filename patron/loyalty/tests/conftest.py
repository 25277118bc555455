from patron.loyalty.tests.helpers import _fresh_rules  # noqa: F401 - autouse fixture
