#!/usr/bin/env python3
"""asyncpg against Shoal's PostgreSQL endpoint, as an application uses it: the binary protocol
throughout (asyncpg asks every parameter and result in binary), prepared statements, numeric,
date, time, timestamp (naive and zoned), interval, boolean, uuid, jsonb, float and bigint columns
written and read back with their Python types, ILIKE, now(), interval arithmetic, date_trunc and
extract, a unique violation caught by its class, a transaction that rolls back.

Usage: asyncpg_session.py PORT [PORT ...]
(prints "asyncpg session: ok" on success; writes go to the first port, reads are checked on
every port given, waiting up to 10 s for a node that lags)
"""

import asyncio
import datetime as dt
import json
import sys
import time
import uuid
from decimal import Decimal

import asyncpg

ROW = dict(
    name="ada", price=Decimal("12.50"), born=dt.date(1815, 12, 10),
    at=dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=dt.timezone.utc),
    naive=dt.datetime(2024, 1, 2, 3, 4, 5, 123456), ok=True,
    ref=uuid.UUID("8ae508f9-922e-47e8-836d-39a3d9030915"), meta={"tags": ["a", "b"], "n": 1},
    score=1.5, big=2**40, t=dt.time(1, 2, 3, 500000),
    took=dt.timedelta(days=1, hours=2, microseconds=5),
)


async def connect(port):
    return await asyncpg.connect(host="127.0.0.1", port=port, user="shoal", database="shoal",
                                 timeout=5)


async def eventually(port, check, timeout=10.0):
    """Runs `check(connection)` on the node at `port` until it passes (a follower may lag)."""
    deadline = time.time() + timeout
    conn = await connect(port)
    try:
        while True:
            try:
                return await check(conn)
            except (AssertionError, asyncpg.UndefinedTableError):
                if time.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def main(ports):
    conn = await connect(ports[0])
    await conn.execute("DROP TABLE IF EXISTS apg_items")
    await conn.execute(
        "CREATE TABLE apg_items (id SERIAL PRIMARY KEY, name VARCHAR(20) NOT NULL UNIQUE, "
        "price NUMERIC(10, 2), born DATE, at TIMESTAMPTZ, naive TIMESTAMP, ok BOOLEAN, ref UUID, "
        "meta JSONB, score DOUBLE PRECISION, big BIGINT, t TIME, took INTERVAL, "
        "added TIMESTAMPTZ NOT NULL DEFAULT now())")
    insert = await conn.prepare(
        "INSERT INTO apg_items (name, price, born, at, naive, ok, ref, meta, score, big, t, took) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id, added")
    first = await insert.fetchrow(*[ROW[k] if k != "meta" else json.dumps(ROW[k]) for k in ROW])
    assert first["id"] == 1, first
    assert abs((dt.datetime.now(dt.timezone.utc) - first["added"]).total_seconds()) < 60, first
    second = await insert.fetchrow("bob", Decimal("-0.05"), None, None, None, False, None, None,
                                   None, None, None, None)
    assert second["id"] == 2, second
    try:
        await conn.execute("INSERT INTO apg_items (name) VALUES ('ada')")
        raise AssertionError("a duplicate name was accepted")
    except asyncpg.UniqueViolationError:
        pass
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO apg_items (name) VALUES ('rolled back')")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    await conn.close()

    async def check(c):
        row = await c.fetchrow("SELECT * FROM apg_items WHERE name = $1", "ada")
        assert row is not None, "ada not there yet"
        for key, want in ROW.items():
            got = row[key] if key != "meta" else json.loads(row[key])
            assert got == want and isinstance(got, type(want)), f"{key}: {got!r}, want {want!r}"
        by_id = await (await c.prepare("SELECT name, price FROM apg_items WHERE id = $1")).fetch(2)
        assert [tuple(r) for r in by_id] == [("bob", Decimal("-0.05"))], by_id
        names = [r["name"] for r in await c.fetch(
            "SELECT name FROM apg_items WHERE name ILIKE $1 ORDER BY id", "A%")]
        assert names == ["ada"], names
        assert await c.fetchval("SELECT name FROM apg_items WHERE name LIKE 'A%'") is None
        assert await c.fetchval("SELECT count(*) FROM apg_items") == 2
        now = await c.fetchval("SELECT now()")
        assert isinstance(now, dt.datetime) and now.tzinfo is not None, repr(now)
        total = await c.fetchval("SELECT sum(price) FROM apg_items")
        assert total == Decimal("12.45"), repr(total)
        # Intervals: arithmetic with literals, date_trunc and extract of a timestamptz.
        recent = await c.fetchval(
            "SELECT count(*) FROM apg_items WHERE added > now() - interval '1 hour'")
        assert recent == 2, recent
        row = await c.fetchrow(
            "SELECT at + interval '1 month 1 day' AS later, date_trunc('day', at) AS day, "
            "extract(hour FROM at) AS hour, interval '90 minutes' AS span "
            "FROM apg_items WHERE name = 'ada'")
        utc = dt.timezone.utc
        assert row["later"] == dt.datetime(2024, 2, 3, 3, 4, 5, 250000, tzinfo=utc), row
        assert row["day"] == dt.datetime(2024, 1, 2, tzinfo=utc), row
        assert row["hour"] == 3, row
        assert row["span"] == dt.timedelta(minutes=90), row
    for port in ports:
        await eventually(port, check)
    print("asyncpg session: ok")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
