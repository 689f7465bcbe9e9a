"""A CRUD session through pyrqlite (rqlite's DB-API driver), unchanged, against a Shoal node.

Checks: DDL, inserts with parameters (text, integer, real, NULL, BLOB), lastrowid, executemany,
selects with parameters and exact values/types back, UPDATE rowcount, DELETE, and that a SQL
error raises the DB-API error class. Exits non-zero on the first failure.
"""

import argparse
import sys

import pyrqlite.dbapi2 as dbapi2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4001)
    args = parser.parse_args()

    connection = dbapi2.connect(host=args.host, port=args.port)
    cursor = connection.cursor()
    cursor.execute("DROP TABLE IF EXISTS people")
    cursor.execute(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, score REAL, photo BLOB)"
    )

    cursor.execute("INSERT INTO people(name, age, score, photo) VALUES (?, ?, ?, ?)", ("ada", 36, 9.5, b"\x00\x01\xfe"))
    assert cursor.lastrowid == 1, f"lastrowid after first insert: {cursor.lastrowid}"
    cursor.executemany(
        "INSERT INTO people(name, age, score, photo) VALUES (?, ?, ?, ?)",
        [("brian", 41, 7.25, None), ("claude", None, 8.0, b"shoal"), ("dana", 29, None, None)],
    )
    cursor.execute("INSERT INTO people(name, age) VALUES (:name, :age)", {"name": "ed", "age": 50})
    assert cursor.lastrowid == 5, f"lastrowid after named insert: {cursor.lastrowid}"

    cursor.execute("SELECT id, name, age, score, photo FROM people WHERE name = ?", ("ada",))
    row = cursor.fetchone()
    assert tuple(row) == (1, "ada", 36, 9.5, b"\x00\x01\xfe"), f"round trip of ada: {tuple(row)!r}"
    cursor.execute("SELECT photo FROM people WHERE name = 'claude'")
    assert cursor.fetchone()[0] == b"shoal", "BLOB did not round-trip"

    cursor.execute("SELECT name FROM people WHERE age > ? ORDER BY name", (30,))
    names = [r[0] for r in cursor.fetchall()]
    assert names == ["ada", "brian", "ed"], f"filtered names: {names}"

    cursor.execute("UPDATE people SET score = score + 1 WHERE score IS NOT NULL")
    assert cursor.rowcount == 3, f"UPDATE rowcount: {cursor.rowcount}"
    cursor.execute("DELETE FROM people WHERE name = ?", ("dana",))
    assert cursor.rowcount == 1, f"DELETE rowcount: {cursor.rowcount}"

    try:
        cursor.execute("INSERT INTO no_such_table VALUES (1)")
    except dbapi2.Error:
        pass
    else:
        raise AssertionError("a SQL error did not raise dbapi2.Error")

    cursor.execute("SELECT count(*), sum(score) FROM people")
    count, total = cursor.fetchone()
    assert (count, total) == (4, 10.5 + 8.25 + 9.0), f"final count/sum: {(count, total)}"
    connection.close()
    print("pyrqlite CRUD: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
