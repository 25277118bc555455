import pytest
from django.db import connection
from tests.test_no_500 import schema, world  # noqa

def test_dbg(world):
    print("before", connection.connection, connection.in_atomic_block)
    op = schema["/api/v1/members"]["GET"]
    case = op.Case(query={"phone": "1"})
    r = case.call(headers={"Authorization": "Bearer " + world["api_key"]})
    print("after", r.status_code, connection.connection, connection.in_atomic_block)
    from patron.members.models import Member
    print(Member.objects.count())
