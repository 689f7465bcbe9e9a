#!/usr/bin/env python3
"""Peewee 4 over psycopg2 against Shoal's PostgreSQL endpoint, as an application uses it:
create_tables (SERIAL keys, a foreign key with ON DELETE CASCADE, an index), create,
get_or_create, insert_many, joins, group by with COUNT, contains/ILIKE, an update with an
expression, atomic() rolled back, IntegrityError, pagination, a cascading delete, and
Peewee's introspection (get_tables, get_columns, get_indexes, get_foreign_keys).

Usage: peewee_session.py PORT [PORT ...]
(prints "peewee session: ok" on success; writes go to the first port, reads are checked on
every port given, waiting up to 10 s for a node that lags)
"""

import datetime as dt
import sys
import time
from decimal import Decimal

from peewee import (JOIN, BlobField, BooleanField, CharField, DateField, DateTimeField,
                    DecimalField, ForeignKeyField, IntegrityError, Model, PostgresqlDatabase,
                    TextField, fn)


def models(port):
    db = PostgresqlDatabase("shoal", host="127.0.0.1", port=port, user="shoal",
                            connect_timeout=5)

    class Base(Model):
        class Meta:
            database = db

    class Author(Base):
        name = CharField(unique=True)
        born = DateField(null=True)

    class Book(Base):
        author = ForeignKeyField(Author, backref="books", on_delete="CASCADE")
        title = TextField()
        price = DecimalField(max_digits=8, decimal_places=2, default=0)
        published = DateTimeField(default=dt.datetime.now)
        in_print = BooleanField(default=True)
        data = BlobField(null=True)

    return db, Author, Book


def write(port):
    db, Author, Book = models(port)
    db.connect()
    db.drop_tables([Book, Author])
    db.create_tables([Author, Book])
    ada = Author.create(name="ada", born=dt.date(1815, 12, 10))
    bob, created = Author.get_or_create(name="bob")
    assert created and bob.id == 2, bob.id
    _, created = Author.get_or_create(name="bob")
    assert not created
    Book.insert_many([
        {"author": ada, "title": "Notes", "price": Decimal("12.50"), "data": b"\x00\x01"},
        {"author": bob, "title": "Bits"},
        {"author": bob, "title": "Bytes", "in_print": False},
    ]).execute()
    with db.atomic() as transaction:
        Author.create(name="carol")
        transaction.rollback()
    try:
        Author.create(name="ada")
        raise AssertionError("a duplicate name was accepted")
    except IntegrityError:
        pass
    updated = Book.update(price=Book.price + 1).where(Book.title == "Notes").execute()
    assert updated == 1, updated
    assert db.get_tables() == ["author", "book"], db.get_tables()
    columns = [c.name for c in db.get_columns("book")]
    assert columns == ["id", "author_id", "title", "price", "published", "in_print", "data"], columns
    indexes = {i.name: (i.columns, i.unique) for i in db.get_indexes("book")}
    assert indexes == {"book_pkey": (["id"], True), "book_author_id": (["author_id"], False)}, indexes
    (key,) = db.get_foreign_keys("book")
    assert (key.column, key.dest_table, key.dest_column) == ("author_id", "author", "id"), key
    db.close()


def check(port, deleted):
    db, Author, Book = models(port)
    db.connect()
    try:
        if deleted:
            assert Author.select().where(Author.name == "ada").count() == 0
            titles = [b.title for b in Book.select().order_by(Book.title)]
            assert titles == ["Bits", "Bytes"], titles
            return
        rows = [(b.title, b.price, b.author.name)
                for b in Book.select(Book, Author).join(Author).order_by(Book.title)]
        assert rows == [("Bits", Decimal("0.00"), "bob"), ("Bytes", Decimal("0.00"), "bob"),
                        ("Notes", Decimal("13.50"), "ada")], rows
        counts = list(Author.select(Author.name, fn.COUNT(Book.id).alias("n"))
                      .join(Book, JOIN.LEFT_OUTER).group_by(Author.name)
                      .order_by(Author.name).tuples())
        assert counts == [("ada", 1), ("bob", 2)], counts
        assert Author.select().where(Author.name == "carol").count() == 0
        assert Book.select().where(Book.title.contains("yt")).count() == 1
        assert Book.select().where(Book.title ** "b%").count() == 2
        notes = Book.get(Book.title == "Notes")
        assert bytes(notes.data) == b"\x00\x01" and notes.in_print is True, notes.data
        assert isinstance(notes.published, dt.datetime)
        page = [b.title for b in Book.select().order_by(Book.id).paginate(2, 1)]
        assert page == ["Bits"], page
        assert Author.get(Author.name == "ada").born == dt.date(1815, 12, 10)
    finally:
        db.close()


def eventually(port, deleted, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        try:
            return check(port, deleted)
        except Exception:  # noqa: BLE001 - a lagging follower is retried until the deadline
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def main(ports):
    write(ports[0])
    for port in ports:
        eventually(port, deleted=False)
    db, Author, _ = models(ports[0])
    db.connect()
    Author.get(Author.name == "ada").delete_instance()
    db.close()
    for port in ports:
        eventually(port, deleted=True)
    print("peewee session: ok")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([int(p) for p in sys.argv[1:]])
