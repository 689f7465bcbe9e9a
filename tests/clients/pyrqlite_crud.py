"""CRUD session through pyrqlite's DB-API against an rqlite-compatible server.

Usage: python3 pyrqlite_crud.py --host 127.0.0.1 --port 4001

Uses pyrqlite.dbapi2.connect(host=..., port=...) exactly as an application
would, and checks:
  * CREATE TABLE with INTEGER PRIMARY KEY, TEXT, REAL and BLOB columns;
  * executemany() of parameterized INSERTs (text with a quote and non-ASCII,
    None, bytes incl. 0x00/0xff and an empty blob), and its rowcount;
  * execute() INSERT with named (:name) parameters and cursor.lastrowid;
  * SELECT with positional (?) and named (:name) parameters and a `level`
    (consistency) parameter: values and Python types round-trip exactly
    (int, str, float, bytes, None), cursor.description, Row mapping access;
  * UPDATE / DELETE rowcount (matching and non-matching);
  * SQL errors (on /db/execute and on /db/query) raise dbapi2.Error;
  * final COUNT(*).
pyrqlite substitutes parameters into the SQL text client-side (bytes become
X'..' literals) and expects BLOB columns back base64-encoded with type "blob".
Prints "pyrqlite CRUD: ok" and exits 0 on success; any failure exits non-zero.
"""
import argparse
import sys
import traceback

import pyrqlite.dbapi2 as dbapi2

TABLE = "pyrqlite_crud"
ROWS = [
    (1, "alice", 1.5, b"\x00\x01\xfe\xff"),
    (2, "bob's \"quoted\"", -2.25, None),
    (3, "Österreich ✓", None, b"hello"),
    (4, None, 0.0, b""),
]


def check_row(got, exp):
    assert tuple(got) == tuple(exp), "row mismatch: got %r, expected %r" % (tuple(got), exp)
    for g, e in zip(got, exp):
        assert type(g) is type(e), "type mismatch for %r: got %s, expected %s" % (
            e, type(g).__name__, type(e).__name__)


def run(host, port):
    conn = dbapi2.connect(host=host, port=port)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS %s" % TABLE)
    cur.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)" % TABLE)

    # executemany with parameters (None, bytes, quotes, unicode).
    cur.executemany("INSERT INTO %s (id, name, score, data) VALUES (?, ?, ?, ?)" % TABLE, ROWS)
    assert cur.rowcount == len(ROWS), "executemany rowcount %r != %d" % (cur.rowcount, len(ROWS))

    # Single INSERT (named parameters, no explicit id): lastrowid is the new rowid.
    cur.execute("INSERT INTO %s (name, score, data) VALUES (:name, :score, :data)" % TABLE,
                {"name": "carol", "score": 3.75, "data": b"\x10\x20"})
    assert cur.lastrowid == 5, "lastrowid %r != 5" % (cur.lastrowid,)
    expected = list(ROWS) + [(5, "carol", 3.75, b"\x10\x20")]

    # SELECT with a positional parameter: exact values and types.
    cur.execute("SELECT id, name, score, data FROM %s WHERE id >= ? ORDER BY id" % TABLE, (1,))
    names = [d[0] for d in cur.description]
    assert names == ["id", "name", "score", "data"], "description names %r" % (names,)
    assert cur.rowcount == len(expected), "select rowcount %r != %d" % (cur.rowcount, len(expected))
    got = cur.fetchall()
    assert len(got) == len(expected), "fetched %d rows, expected %d" % (len(got), len(expected))
    for g, e in zip(got, expected):
        check_row(g, e)
    assert got[0]["name"] == "alice", "Row mapping access by column name failed: %r" % (got[0]["name"],)
    assert cur.fetchone() is None, "fetchone after fetchall should be None"

    # Named parameter, plus an explicit read-consistency level.
    cur.execute("SELECT name, data FROM %s WHERE id = :ident" % TABLE, {"ident": 2}, consistency="weak")
    row = cur.fetchone()
    assert row is not None, "named-parameter select returned no row"
    check_row(row, ("bob's \"quoted\"", None))

    # Blob parameter inside a WHERE clause.
    cur.execute("SELECT id FROM %s WHERE data = ?" % TABLE, (b"\x00\x01\xfe\xff",))
    ids = [r[0] for r in cur.fetchall()]
    assert ids == [1], "select by blob parameter returned ids %r" % (ids,)

    # An expression column (no declared type).
    cur.execute("SELECT 1+1")
    row = cur.fetchone()
    assert row is not None and row[0] == 2 and type(row[0]) is int, "SELECT 1+1 gave %r" % (row,)

    # UPDATE with rowcount.
    cur.execute("UPDATE %s SET score = score + ? WHERE score IS NOT NULL AND id <= ?" % TABLE, (1.0, 2))
    assert cur.rowcount == 2, "update rowcount %r != 2" % (cur.rowcount,)
    cur.execute("SELECT score FROM %s WHERE id IN (?, ?) ORDER BY id" % TABLE, (1, 2))
    scores = [r[0] for r in cur.fetchall()]
    assert scores == [2.5, -1.25], "scores after update %r" % (scores,)
    cur.execute("UPDATE %s SET name = ? WHERE id = ?" % TABLE, ("nobody", 999))
    assert cur.rowcount == 0, "no-match update rowcount %r != 0" % (cur.rowcount,)

    # DELETE with rowcount.
    cur.execute("DELETE FROM %s WHERE id = ?" % TABLE, (4,))
    assert cur.rowcount == 1, "delete rowcount %r != 1" % (cur.rowcount,)
    cur.execute("DELETE FROM %s WHERE id = ?" % TABLE, (4,))
    assert cur.rowcount == 0, "repeated delete rowcount %r != 0" % (cur.rowcount,)

    # SQL errors raise the DB-API error class (via /db/execute and /db/query).
    for bad in ("INSERT INTO %s (id, name) VALUES (1, 'dup')" % TABLE,  # PK violation
                "INSERT INTO no_such_table_xyz VALUES (1)",
                "SELECT * FROM no_such_table_xyz"):
        try:
            cur.execute(bad)
        except dbapi2.Error:
            pass
        else:
            raise AssertionError("no dbapi2.Error raised for: %s" % bad)

    # Final count.
    cur.execute("SELECT COUNT(*) FROM %s" % TABLE)
    count = cur.fetchone()[0]
    assert count == 4 and type(count) is int, "final COUNT(*) %r != 4" % (count,)

    cur.execute("DROP TABLE %s" % TABLE)
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4001)
    args = ap.parse_args()
    try:
        run(args.host, args.port)
    except Exception:
        traceback.print_exc()
        print("pyrqlite CRUD: FAILED", file=sys.stderr)
        return 1
    print("pyrqlite CRUD: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
