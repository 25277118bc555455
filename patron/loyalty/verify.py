"""``patron ledger verify``: the ledger's invariants, checked set-based (PTS-7).

1. every account's cached available, pending and debt equal the sums of its entries;
2. every account's available (pending) equals the remaining points of its available
   (pending) lots;
3. every lot's remaining equals its amount plus its allocations, lies within 0..amount, and
   is 0 once the lot is expired or void;
4. the points of a fully refunded or cancelled order net to zero (each of its lots is
   wholly clawed back; what had been spent became debt);
5. no entry belongs to a member without an account.

Each check is one SQL statement over the whole ledger returning at most ``LIMIT`` offenders,
so it runs in seconds over millions of rows on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

LIMIT = 20

CHECKS: dict[str, str] = {
    "account_vs_entries": """
        SELECT a.member_id FROM loyalty_account a
        LEFT JOIN (SELECT member_id, SUM(points) AS p, SUM(pending_delta) AS q,
                          SUM(debt_delta) AS d
                   FROM loyalty_entry GROUP BY member_id) e ON e.member_id = a.member_id
        WHERE a.available <> COALESCE(e.p, 0) OR a.pending <> COALESCE(e.q, 0)
           OR a.debt <> COALESCE(e.d, 0)
        ORDER BY a.member_id LIMIT %s""",
    "account_vs_lots": """
        SELECT a.member_id FROM loyalty_account a
        LEFT JOIN (SELECT member_id,
                          SUM(CASE WHEN status = 'available' THEN remaining ELSE 0 END) AS av,
                          SUM(CASE WHEN status = 'pending' THEN remaining ELSE 0 END) AS pe
                   FROM loyalty_lot GROUP BY member_id) l ON l.member_id = a.member_id
        WHERE a.available <> COALESCE(l.av, 0) OR a.pending <> COALESCE(l.pe, 0)
        ORDER BY a.member_id LIMIT %s""",
    "lot_vs_allocations": """
        SELECT l.id FROM loyalty_lot l
        LEFT JOIN (SELECT lot_id, SUM(points) AS s FROM loyalty_allocation GROUP BY lot_id) x
               ON x.lot_id = l.id
        WHERE l.remaining <> l.amount + COALESCE(x.s, 0)
           OR l.remaining < 0 OR l.remaining > l.amount
           OR (l.status IN ('expired', 'void') AND l.remaining <> 0)
        ORDER BY l.id LIMIT %s""",
    "refunded_order_nets_to_zero": """
        SELECT DISTINCT o.order_id FROM loyalty_order o
        JOIN loyalty_lot l ON l.order_id = o.id
        WHERE (o.status = 'cancelled' OR o.refunded_amount >= o.amount)
          AND l.clawed <> l.amount
        ORDER BY o.order_id LIMIT %s""",
    "entries_without_account": """
        SELECT DISTINCT e.member_id FROM loyalty_entry e
        LEFT JOIN loyalty_account a ON a.member_id = e.member_id
        WHERE a.member_id IS NULL
        ORDER BY e.member_id LIMIT %s""",
}


@dataclass
class LedgerReport:
    problems: dict[str, list] = field(default_factory=dict)
    accounts: int = 0
    entries: int = 0
    lots: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_ledger() -> LedgerReport:
    report = LedgerReport()
    with connection.cursor() as cursor:
        for name, sql in CHECKS.items():
            cursor.execute(sql, [LIMIT])
            offenders = [row[0] for row in cursor.fetchall()]
            if offenders:
                report.problems[name] = offenders
        for attr, table in (("accounts", "account"), ("entries", "entry"), ("lots", "lot")):
            cursor.execute(f"SELECT COUNT(*) FROM loyalty_{table}")  # noqa: S608 - fixed names
            setattr(report, attr, cursor.fetchone()[0])
    return report
