#!/usr/bin/env python3
"""A psycopg 3 session against Shoal's PostgreSQL endpoint, written as an application would:
default (transactional) connections, parameters, commit and rollback, typed errors.

Usage: psycopg_session.py PORT   (prints "psycopg session: ok" on success)
"""

import sys

import psycopg
from psycopg import errors


def main(port):
    dsn = f"host=127.0.0.1 port={port} user=shoal dbname=shoal connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(
            "CREATE TABLE person(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, score REAL)"
        )

    # psycopg's default: every block of work is a transaction committed by the context manager.
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO person(name, age, score) VALUES (%s, %s, %s)", ("Ada", 36, 9.5))
            cur.execute("INSERT INTO person(name, age, score) VALUES (%s, %s, %s)", ("Alan", 41, None))
            cur.execute("SELECT name, age FROM person WHERE age > %s ORDER BY age", (30,))
            rows = cur.fetchall()
            assert rows == [("Ada", 36), ("Alan", 41)], rows
        conn.commit()

        with conn.cursor() as cur:
            cur.execute("UPDATE person SET age = age + 1 WHERE name = %s", ("Ada",))
            assert cur.rowcount == 1, cur.rowcount
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT age FROM person WHERE name = %s", ("Ada",))
            assert cur.fetchone() == (36,), "a rolled back update must not apply"

        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO person(id, name) VALUES (%s, %s)", (1, "dup"))
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation:
            conn.rollback()

        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM nowhere")
            raise AssertionError("missing table accepted")
        except errors.UndefinedTable:
            conn.rollback()

        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM person")
            assert str(cur.fetchone()[0]) == "2"

    print("psycopg session: ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
