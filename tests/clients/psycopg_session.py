#!/usr/bin/env python3
"""A psycopg 3 session against Shoal's PostgreSQL endpoint, written as an application would:
default (transactional) connections, parameters of every SQLite type, executemany, commit and
rollback, concurrent transactions, typed errors.

Usage: psycopg_session.py PORT [OTHER_NODE_PORT ...]
(prints "psycopg session: ok" on success; writes are checked on every node given)
"""

import sys
import time

import psycopg
from psycopg import errors


def dsn(port):
    return f"host=127.0.0.1 port={port} user=shoal dbname=shoal connect_timeout=5"


def on_every_node(ports, query, expected, timeout=20.0):
    """Waits until `query` returns `expected` on every node (reads at level none)."""
    for port in ports:
        deadline = time.time() + timeout
        with psycopg.connect(dsn(port), autocommit=True) as conn:
            conn.execute("SET shoal.read_consistency = 'none'")
            while True:
                got = conn.execute(query).fetchall()
                if got == expected:
                    break
                if time.time() > deadline:
                    raise AssertionError(f"node on port {port}: {query} gave {got}, not {expected}")
                time.sleep(0.05)


def types_and_executemany(port):
    with psycopg.connect(dsn(port)) as conn:
        conn.execute(
            "CREATE TABLE sample(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, flag BOOLEAN)"
        )
        rows = [
            (1, 42, 2.5, "plain", b"\x00\x01\xff", True),
            (2, -(2**62), -0.125, "quote ' and ''", b"", False),
            (3, None, None, None, None, None),
            (4, 0, 1e300, "ünïcode ✓", bytes(range(256)), True),
        ]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO sample VALUES (%s, %s, %s, %s, %s, %s)", rows)
        conn.commit()
        got = conn.execute("SELECT id, i, r, t, b, flag FROM sample ORDER BY id").fetchall()
        assert got == rows, got
        # Binary results give the same values.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, i, r, t, b, flag FROM sample WHERE id = %s", (4,))
            assert cur.fetchone() == rows[3]
        conn.rollback()


def transaction_commit_and_rollback(ports):
    with psycopg.connect(dsn(ports[0])) as conn:
        conn.execute("CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        conn.execute("INSERT INTO account VALUES (1, 100), (2, 0)")
        conn.commit()
        with psycopg.connect(dsn(ports[0]), autocommit=True) as other:
            conn.execute("UPDATE account SET balance = balance - 40 WHERE id = 1")
            conn.execute("UPDATE account SET balance = balance + 40 WHERE id = 2")
            # Read-your-writes inside the transaction; nobody else sees them yet.
            assert conn.execute("SELECT balance FROM account ORDER BY id").fetchall() == [(60,), (40,)]
            assert other.execute("SELECT balance FROM account ORDER BY id").fetchall() == [(100,), (0,)]
            conn.commit()
        on_every_node(ports, "SELECT balance FROM account ORDER BY id", [(60,), (40,)])

        conn.execute("DELETE FROM account")
        assert conn.execute("SELECT count(*) FROM account").fetchone() == (0,)
        conn.rollback()
        on_every_node(ports, "SELECT count(*) FROM account", [(2,)])


def concurrent_transactions_are_serialized(port):
    with psycopg.connect(dsn(port)) as setup:
        setup.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        setup.execute("INSERT INTO counter VALUES (1, 0)")
        setup.commit()
    first = psycopg.connect(dsn(port))
    second = psycopg.connect(dsn(port))
    try:
        # Both read n = 0 and write n + 1: serially that is 2, never a lost update to 1.
        n1 = first.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
        n2 = second.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
        first.execute("UPDATE counter SET n = %s WHERE id = 1", (n1 + 1,))
        second.execute("UPDATE counter SET n = %s WHERE id = 1", (n2 + 1,))
        first.commit()
        try:
            second.commit()
            raise AssertionError("both transactions committed on the same read")
        except errors.SerializationFailure:
            second.rollback()
        # The loser retries and wins.
        n = second.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
        second.execute("UPDATE counter SET n = %s WHERE id = 1", (n + 1,))
        second.commit()
        assert second.execute("SELECT n FROM counter").fetchone() == (2,)
        second.rollback()
    finally:
        first.close()
        second.close()


def errors_are_typed(port):
    with psycopg.connect(dsn(port)) as conn:
        try:
            conn.execute("INSERT INTO sample(id) VALUES (%s)", (1,))
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation:
            conn.rollback()
        try:
            conn.execute("SELECT * FROM nowhere")
            raise AssertionError("missing table accepted")
        except errors.UndefinedTable:
            conn.rollback()
        # A savepoint undoes a failed statement without losing the transaction.
        conn.execute("INSERT INTO sample(id, t) VALUES (10, 'kept')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO sample(id) VALUES (1)")
        except errors.UniqueViolation:
            pass
        conn.commit()
        assert conn.execute("SELECT t FROM sample WHERE id = 10").fetchone() == ("kept",)


def main(ports):
    types_and_executemany(ports[0])
    transaction_commit_and_rollback(ports)
    concurrent_transactions_are_serialized(ports[0])
    errors_are_typed(ports[0])
    print("psycopg session: ok")


if __name__ == "__main__":
    main([int(p) for p in sys.argv[1:]])
