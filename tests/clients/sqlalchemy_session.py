#!/usr/bin/env python3
"""SQLAlchemy Core with the psycopg dialect against Shoal's PostgreSQL endpoint: create_all
(which looks tables up in pg_catalog), inserts with RETURNING, executemany, select.

Usage: sqlalchemy_session.py PORT   (prints "sqlalchemy session: ok" on success)
"""

import sys

from sqlalchemy import (Column, Float, Integer, LargeBinary, MetaData, String, Table, create_engine,
                        insert, inspect, select)


def main(port):
    engine = create_engine(f"postgresql+psycopg://shoal@127.0.0.1:{port}/shoal")
    meta = MetaData()
    users = Table(
        "sa_users", meta,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
        Column("score", Float),
        Column("photo", LargeBinary),
    )
    meta.create_all(engine)
    assert inspect(engine).has_table("sa_users")
    with engine.begin() as conn:
        first = conn.execute(insert(users).values(name="ada", score=1.5, photo=b"\x00\x01"))
        assert first.inserted_primary_key == (1,), first.inserted_primary_key
        conn.execute(insert(users), [
            {"name": "bob", "score": None, "photo": None},
            {"name": "cy", "score": 2.0, "photo": b""},
        ])
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.id)).all()
    assert [tuple(r) for r in rows] == [
        (1, "ada", 1.5, b"\x00\x01"), (2, "bob", None, None), (3, "cy", 2.0, b""),
    ], rows
    meta.create_all(engine)  # the tables exist now: nothing to do, no error
    print("sqlalchemy session: ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
