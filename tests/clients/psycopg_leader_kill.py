#!/usr/bin/env python3
"""A psycopg transaction whose leader is killed halfway: it must fail, and nothing of it may
be applied. The test harness kills the leader when this prints READY and writes a line to
stdin once a new leader is elected.

Usage: psycopg_leader_kill.py PORT   (prints "psycopg leader kill: ok" on success)
"""

import sys

import psycopg
from psycopg import errors


def main(port):
    dsn = f"host=127.0.0.1 port={port} user=shoal dbname=shoal connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE kill_test(x INTEGER)")
    conn = psycopg.connect(dsn)
    conn.execute("INSERT INTO kill_test VALUES (%s)", (1,))
    print("READY", flush=True)
    sys.stdin.readline()
    try:
        conn.execute("INSERT INTO kill_test VALUES (%s)", (2,))
        conn.commit()
        raise AssertionError("the transaction committed across a leader's death")
    except errors.SerializationFailure as failure:
        assert "leader" in str(failure), failure
        conn.rollback()
    with psycopg.connect(dsn, autocommit=True) as check:
        rows = check.execute("SELECT x FROM kill_test").fetchall()
        assert rows == [], f"part of the transaction was applied: {rows}"
    conn.close()
    print("psycopg leader kill: ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
