#!/usr/bin/env python3
"""SQLAlchemy 2 ORM with the psycopg dialect against Shoal's PostgreSQL endpoint, written as an
application would: declarative models with every common column type, two related models,
drop_all/create_all, CRUD through Session, eager loading, filters, joins, aggregates, pagination,
integrity errors and reflection with inspect(). Values read back are checked with their types.

Usage: sqlalchemy_orm.py PORT [PORT ...]
(prints "sqlalchemy orm: ok" on success; writes go to the first port, reads are checked on every
port given, waiting up to 10 s for a node that lags; prints PASS/FAIL per step)

"""

import datetime as dt
import enum
import sys
import time
import uuid
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, Enum, Float, ForeignKey, Integer,
                        Numeric, String, Text, Uuid, create_engine, exc, func, inspect, select,
                        text, update)
from sqlalchemy.orm import (DeclarativeBase, Mapped, Session, joinedload, mapped_column,
                            relationship, selectinload)


class Genre(enum.Enum):
    fiction = "fiction"
    science = "science"
    poetry = "poetry"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "orm_authors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    bio: Mapped[str | None] = mapped_column(Text)
    born: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=dt.datetime.now)
    books: Mapped[list["Book"]] = relationship(back_populates="author", order_by="Book.id",
                                                cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "orm_books"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("orm_authors.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    isbn: Mapped[str] = mapped_column(String(20), unique=True)
    pages: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    rating: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict | None] = mapped_column(JSON)
    ref: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4)
    genre: Mapped[Genre] = mapped_column(Enum(Genre))
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    author: Mapped[Author] = relationship(back_populates="books")


UTC = dt.timezone.utc
BOOKS = [  # title, pages, price, rating, meta, genre, published_at
    ("Dune", 412, Decimal("9.99"), 4.5, {"tags": ["sf", "classic"], "n": 1, "ok": True},
     Genre.fiction, dt.datetime(1965, 8, 1, 9, 30, tzinfo=UTC)),
    ("Dune Messiah", 256, Decimal("12.50"), 3.5, {"tags": [], "price": 1.25}, Genre.fiction,
     dt.datetime(1969, 10, 15, 18, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("Cosmos", 2**40, Decimal("20.00"), 4.0, None, Genre.science, None),
]
TITLES = [b[0] for b in BOOKS]


def same(what, got, want, kind=None):
    """Asserts got == want and, unless want is None, that got is exactly of type kind."""
    kind = kind or type(want)
    ok = got is None if want is None else (type(got) is kind and got == want)
    assert ok, f"{what}: got {got!r} ({type(got).__name__}), want {want!r} ({kind.__name__})"


def recent(what, value, aware):
    """Asserts value is a datetime (tz-aware or naive as asked) within 10 minutes of now."""
    assert isinstance(value, dt.datetime), f"{what}: {value!r} ({type(value).__name__}) is no datetime"
    assert (value.tzinfo is not None) == aware, f"{what}: {value!r} should be {'aware' if aware else 'naive'}"
    now = dt.datetime.now(UTC) if aware else dt.datetime.now()
    assert abs(now - value) < dt.timedelta(minutes=10), f"{what}: {value!r} is not close to {now!r}"


def tag(step):
    return f"{step}-{uuid.uuid4().hex[:8]}"  # unique names: the tables may hold earlier runs' rows


def seed(engine, name, books=BOOKS):
    """Adds an author called `name` with `books` through the ORM; returns what was written."""
    with Session(engine) as s:
        a = Author(name=name, bio=f"bio of {name}", born=dt.date(1920, 10, 8), books=[
            Book(title=t, isbn=f"{name[-8:]}-{i}", pages=p, price=pr, rating=r, meta=m, genre=g,
                 published_at=pub)
            for i, (t, p, pr, r, m, g, pub) in enumerate(books)])
        s.add(a)
        s.flush()
        info = SimpleNamespace(id=a.id, name=name, created_at=a.created_at,
                               book_ids=[b.id for b in a.books], refs=[b.ref for b in a.books])
        s.commit()
    return info


def on_every_node(engines, check, timeout=10.0):
    """Runs check(session) on every node, retrying while it fails an assertion (a lagging node)."""
    for engine in engines:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with Session(engine) as s:
                    check(s)
                break
            except (AssertionError, exc.NoSuchTableError) as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"port {engine.url.port}: {e}") from e
                time.sleep(0.1)


def create_schema(engines):
    """drop_all/create_all (with tables present and absent) and has_table on every node."""
    for _ in range(2):
        Base.metadata.drop_all(engines[0])
        Base.metadata.create_all(engines[0])
    Base.metadata.create_all(engines[0])  # everything exists: nothing to do

    def check(s):
        for table in ("orm_authors", "orm_books"):
            assert inspect(s.get_bind()).has_table(table), f"no table {table}"
    on_every_node(engines, check)


def insert_and_read_back(engines):
    """Session.add + commit; every attribute reads back with its value and Python type."""
    info = seed(engines[0], tag("read"))
    same("created_at set by default", type(info.created_at), dt.datetime)

    def check(s):
        a = s.get(Author, info.id)
        assert a is not None, f"author {info.id} not found"
        same("author.id", a.id, info.id)
        same("name", a.name, info.name)
        same("bio", a.bio, f"bio of {info.name}")
        same("born", a.born, dt.date(1920, 10, 8))
        same("active", a.active, True)
        same("created_at", a.created_at, info.created_at)
        same("book ids (lazy load)", [b.id for b in a.books], info.book_ids, list)
        for b, ref, (title, pages, price, rating, meta, genre, pub) in zip(a.books, info.refs, BOOKS):
            same("author_id", b.author_id, info.id)
            same("title", b.title, title)
            same("pages", b.pages, pages)
            same("price", b.price, price)
            same("rating", b.rating, rating)
            same("meta", b.meta, meta)
            same("ref", b.ref, ref, uuid.UUID)
            same("genre", b.genre, genre, Genre)
            same("published_at", b.published_at, pub)
            assert pub is None or b.published_at.tzinfo is not None, "published_at lost its zone"
            recent("added_at (server default now())", b.added_at, aware=True)
            assert b.author is a
    on_every_node(engines, check)


def update_rows(engines):
    """Changing attributes of every type, and an ORM update() statement, are read back."""
    info = seed(engines[0], tag("upd"))
    new_pub = dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    with Session(engines[0]) as s:
        a = s.get(Author, info.id)
        a.active, a.bio, a.born = False, None, dt.date(2000, 2, 29)
        b = a.books[0]
        b.title, b.pages, b.price, b.rating = "Dune (revised)", 2**50, Decimal("11.25"), None
        b.meta, b.genre, b.published_at = {"nested": {"x": 1.5}}, Genre.poetry, new_pub
        s.commit()
        s.execute(update(Book).where(Book.author_id == info.id).values(pages=Book.pages + 1))
        s.commit()

    def check(s):
        a = s.get(Author, info.id)
        same("active", a.active, False)
        same("bio", a.bio, None)
        same("born", a.born, dt.date(2000, 2, 29))
        b = a.books[0]
        same("title", b.title, "Dune (revised)")
        same("pages", [x.pages for x in a.books], [2**50 + 1, 257, 2**40 + 1])
        same("price", b.price, Decimal("11.25"))
        same("rating", b.rating, None)
        same("meta", b.meta, {"nested": {"x": 1.5}})
        same("genre", b.genre, Genre.poetry, Genre)
        same("published_at", b.published_at, new_pub)
        same("other book unchanged", a.books[1].price, Decimal("12.50"))
    on_every_node(engines, check)


def delete_rows(engines):
    """session.delete of a book, then of an author (cascading to its books) removes the rows."""
    info = seed(engines[0], tag("del"))
    with Session(engines[0]) as s:
        s.delete(s.get(Book, info.book_ids[0]))
        s.commit()
        a = s.get(Author, info.id)
        same("books left", [b.id for b in a.books], info.book_ids[1:])
        s.delete(a)
        s.commit()

    def check(s):
        assert s.get(Author, info.id) is None, "author still there"
        left = s.scalars(select(Book).where(Book.id.in_(info.book_ids))).all()
        assert left == [], f"books still there: {left}"
    on_every_node(engines, check)


def joined_loading(engines):
    """joinedload of Author.books (one-to-many) and of Book.author (many-to-one)."""
    info = seed(engines[0], tag("joined"))

    def check(s):
        q = select(Author).options(joinedload(Author.books)).where(Author.id == info.id)
        a = s.scalars(q).unique().one()
        assert "books" in a.__dict__, "books were not loaded eagerly"
        same("titles", [b.title for b in a.books], TITLES)
        same("prices", [b.price for b in a.books], [b[2] for b in BOOKS])
        q = select(Book).options(joinedload(Book.author)).where(Book.author_id == info.id)
        books = s.scalars(q.order_by(Book.id)).all()
        same("authors", [b.__dict__["author"].name for b in books], [info.name] * 3)
    on_every_node(engines, check)


def selectin_loading(engines):
    """selectinload of Author.books for two authors puts each book in its author's collection."""
    one = seed(engines[0], tag("selin"))
    two = seed(engines[0], tag("selin"), books=BOOKS[2:])

    def check(s):
        q = select(Author).options(selectinload(Author.books)).where(Author.id.in_([one.id, two.id]))
        authors = s.scalars(q.order_by(Author.id)).all()
        same("authors", [a.id for a in authors], [one.id, two.id])
        assert all("books" in a.__dict__ for a in authors), "books were not loaded eagerly"
        same("first's books", [b.id for b in authors[0].books], one.book_ids)
        same("second's books", [b.title for b in authors[1].books], ["Cosmos"])
        same("ref", authors[1].books[0].ref, two.refs[0], uuid.UUID)
    on_every_node(engines, check)


def like_and_ilike(engines):
    """like/ilike/contains/icontains/startswith filters; ilike matches case-insensitively."""
    info = seed(engines[0], tag("like"))

    def check(s):
        def titles(cond):
            return s.scalars(select(Book.title).where(Book.author_id == info.id, cond)
                             .order_by(Book.id)).all()
        same("like", titles(Book.title.like("Dune%")), ["Dune", "Dune Messiah"])
        same("contains", titles(Book.title.contains("Messiah")), ["Dune Messiah"])
        same("startswith", titles(Book.title.startswith("Cos")), ["Cosmos"])
        same("ilike", titles(Book.title.ilike("%DUNE%")), ["Dune", "Dune Messiah"])
        same("ilike _", titles(Book.title.ilike("cos_os")), ["Cosmos"])
        same("not ilike", titles(Book.title.not_ilike("%dune%")), ["Cosmos"])
        same("icontains", titles(Book.title.icontains("MESSIAH")), ["Dune Messiah"])
    on_every_node(engines, check)


def like_is_case_sensitive(engines):
    """like() matches case-sensitively, as in PostgreSQL ('dune%' does not match 'Dune')."""
    info = seed(engines[0], tag("likecase"))

    def check(s):
        q = select(Book.title).where(Book.author_id == info.id, Book.title.like("dune%"))
        same("like 'dune%'", s.scalars(q).all(), [])
    on_every_node(engines, check)


def joins(engines):
    """join / outerjoin through the relationship, filtering on the joined table."""
    info = seed(engines[0], tag("join"))
    lonely = seed(engines[0], tag("join"), books=[])

    def check(s):
        q = select(Book.title, Author.name).join(Book.author).where(Author.name == info.name)
        same("rows", [tuple(r) for r in s.execute(q.order_by(Book.id))], [(t, info.name) for t in TITLES])
        q = select(Author).join(Author.books).where(Book.genre == Genre.science, Author.id == info.id)
        same("author by book genre", [a.id for a in s.scalars(q)], [info.id])
        q = (select(Author.name, func.count(Book.id)).outerjoin(Author.books)
             .where(Author.id.in_([info.id, lonely.id])).group_by(Author.name).order_by(Author.id))
        same("outer join counts", [tuple(r) for r in s.execute(q)], [(info.name, 3), (lonely.name, 0)])
    on_every_node(engines, check)


def group_by_aggregates(engines):
    """group_by with func.count/sum/avg: values and types (int, Decimal, float)."""
    info = seed(engines[0], tag("agg"))

    def check(s):
        q = (select(Book.genre, func.count(Book.id), func.sum(Book.price), func.avg(Book.rating),
                    func.avg(Book.price))
             .where(Book.author_id == info.id).group_by(Book.genre).order_by(Book.genre))
        rows = s.execute(q).all()
        same("groups", [r[0] for r in rows], [Genre.fiction, Genre.science], list)
        same("count", [r[1] for r in rows], [2, 1], list)
        same("sum(price)", rows[0][2], Decimal("22.49"))
        same("sum(price)", rows[1][2], Decimal("20.00"))
        same("avg(rating)", [r[3] for r in rows], [4.0, 4.0], list)
        assert all(type(r[3]) is float for r in rows), f"avg(rating) types: {rows}"
        assert type(rows[0][4]) is Decimal and abs(rows[0][4] - Decimal("11.245")) < Decimal("0.01"), \
            f"avg(price): {rows[0][4]!r}"
    on_every_node(engines, check)


def pagination(engines):
    """order_by + limit + offset pages through an author's books."""
    info = seed(engines[0], tag("page"))

    def check(s):
        q = select(Book).where(Book.author_id == info.id).order_by(Book.title)
        pages = [[b.title for b in s.scalars(q.limit(2).offset(n))] for n in (0, 2, 4)]
        same("pages", pages, [["Cosmos", "Dune"], ["Dune Messiah"], []])
        same("count", s.scalar(select(func.count()).select_from(Book).where(Book.author_id == info.id)), 3)
    on_every_node(engines, check)


def select_now(engines):
    """select(func.now()) returns the current time as a tz-aware datetime."""
    on_every_node(engines, lambda s: recent("now()", s.scalar(select(func.now())), aware=True))


def time_windows(engines):
    """now() minus a timedelta (bound as an interval) filters by age; date_trunc and extract of
    a timezone-aware column; an interval literal read back as a timedelta."""
    def check(s):
        count = select(func.count()).select_from(Book)
        fresh = s.scalar(count.where(Book.added_at > func.now() - dt.timedelta(hours=1)))
        stale = s.scalar(count.where(Book.added_at < func.now() - dt.timedelta(days=1)))
        total = s.scalar(count)
        same("books added in the last hour", fresh, total)
        same("books added over a day ago", stale, 0)
        year = s.scalar(select(func.date_trunc("year", Book.published_at))
                        .where(Book.published_at.is_not(None)).order_by(Book.id).limit(1))
        same("date_trunc('year', published_at)", year,
             dt.datetime(year.year, 1, 1, tzinfo=dt.timezone.utc), dt.datetime)
        span = s.scalar(select(text("interval '1 day 02:00:00'")))
        same("interval literal", span, dt.timedelta(days=1, hours=2), dt.timedelta)
    on_every_node(engines, check)


def commit_fails(s, sqlstate):
    """Asserts s.commit() raises IntegrityError with `sqlstate`, then rolls the session back."""
    try:
        s.commit()
    except exc.IntegrityError as e:
        assert e.orig.sqlstate == sqlstate, f"sqlstate {e.orig.sqlstate}, not {sqlstate}: {e.orig}"
        s.rollback()
        return
    raise AssertionError(f"commit succeeded; expected IntegrityError {sqlstate}")


def unique_violation(engines):
    """A duplicate unique name raises IntegrityError (23505); the rolled-back session goes on."""
    info = seed(engines[0], tag("uniq"), books=[])
    with Session(engines[0]) as s:
        s.add(Author(name=info.name))
        commit_fails(s, "23505")
        same("authors so named", s.scalar(select(func.count(Author.id)).where(Author.name == info.name)), 1)
        s.add(Author(name=info.name + "-2"))
        s.commit()


def foreign_key_violation(engines):
    """A book of a missing author raises IntegrityError (23503); the rolled-back session goes on."""
    name = tag("fk")
    with Session(engines[0]) as s:
        s.add(Book(author_id=10**9, title="orphan", isbn=name[-8:], pages=1, price=Decimal("1.00"),
                   genre=Genre.poetry))
        commit_fails(s, "23503")
        same("orphans", s.scalar(select(func.count(Book.id)).where(Book.author_id == 10**9)), 0)
    seed(engines[0], name)  # still usable


def enum_violation(engines):
    """A label outside the native Enum's is refused by the database itself (22P02), not stored."""
    info = seed(engines[0], tag("enum"), books=[])
    with engines[0].connect() as c:
        try:
            c.exec_driver_sql(
                "INSERT INTO orm_books (author_id, title, isbn, pages, price, ref, genre) "
                f"VALUES ({info.id}, 'odd', '{info.name[-8:]}', 1, 1, '{uuid.uuid4()}', 'cookbook')")
        except exc.DataError as e:
            assert e.orig.sqlstate == "22P02", f"sqlstate {e.orig.sqlstate}: {e.orig}"
            assert "genre" in str(e.orig), str(e.orig)
            c.rollback()
        else:
            raise AssertionError("a label outside the enum was stored")
    with Session(engines[0]) as s:
        same("odd books", s.scalar(select(func.count(Book.id)).where(Book.title == "odd")), 0)


def reflection(engines):
    """inspect(engine): tables, columns (order, types), pk, foreign keys, indexes, unique constraints."""
    def check(s):
        insp = inspect(s.get_bind())
        tables = insp.get_table_names()
        assert {"orm_authors", "orm_books"} <= set(tables), f"tables: {tables}"
        for model in (Author, Book):
            table = model.__tablename__
            cols = insp.get_columns(table)
            same(f"{table} columns", [c["name"] for c in cols], [c.name for c in model.__table__.columns])
            for c in cols:
                want = model.__table__.c[c["name"]].type
                assert isinstance(c["type"], type(want)), f"{table}.{c['name']}: {c['type']!r} for {want!r}"
            same(f"{table} pk", insp.get_pk_constraint(table)["constrained_columns"], ["id"])
        cols = {c["name"]: c for c in insp.get_columns("orm_books")}
        same("title length", cols["title"]["type"].length, 200)
        same("title nullable", cols["title"]["nullable"], False)
        same("rating nullable", cols["rating"]["nullable"], True)
        same("price precision/scale", (cols["price"]["type"].precision, cols["price"]["type"].scale), (10, 2))
        same("published_at timezone", cols["published_at"]["type"].timezone, True)
        same("genre values", list(cols["genre"]["type"].enums), ["fiction", "science", "poetry"])
        assert "now()" in (cols["added_at"]["default"] or ""), f"added_at default: {cols['added_at']}"
        assert cols["id"]["autoincrement"], f"id: {cols['id']}"
        acols = {c["name"]: c for c in insp.get_columns("orm_authors")}
        same("created_at timezone", acols["created_at"]["type"].timezone, False)
        same("born type", type(acols["born"]["type"]).__name__, "DATE")
        fks = [(f["constrained_columns"], f["referred_table"], f["referred_columns"])
               for f in insp.get_foreign_keys("orm_books")]
        same("books foreign keys", fks, [(["author_id"], "orm_authors", ["id"])])
        same("authors foreign keys", insp.get_foreign_keys("orm_authors"), [])
        idx = [(i["name"], i["column_names"], i["unique"]) for i in insp.get_indexes("orm_books")
               if not i.get("duplicates_constraint")]
        same("books indexes", idx, [("ix_orm_books_author_id", ["author_id"], False)])
        idx = [i for i in insp.get_indexes("orm_authors") if not i.get("duplicates_constraint")]
        same("authors indexes", idx, [])
        for table, column in (("orm_authors", "name"), ("orm_books", "isbn")):
            uniques = [u["column_names"] for u in insp.get_unique_constraints(table)]
            same(f"{table} unique constraints", uniques, [[column]])
    on_every_node(engines, check)


STEPS = [create_schema, insert_and_read_back, update_rows, delete_rows, joined_loading,
         selectin_loading, like_and_ilike, like_is_case_sensitive, joins, group_by_aggregates,
         pagination, select_now, time_windows, unique_violation, foreign_key_violation, enum_violation,
         reflection]


def main(ports):
    engines = [create_engine(f"postgresql+psycopg://shoal@127.0.0.1:{p}/shoal",
                             connect_args={"connect_timeout": 5}) for p in ports]
    failed = []
    for step in STEPS:
        try:
            step(engines)
            print(f"PASS {step.__name__}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next step runs
            lines = "\n    ".join(str(e).splitlines()[:8])
            print(f"FAIL {step.__name__}: {type(e).__name__}: {lines}", flush=True)
            failed.append(step.__name__)
    for engine in engines:
        engine.dispose()
    if failed:
        sys.exit(f"sqlalchemy orm: {len(failed)} step(s) failed: {', '.join(failed)}")
    print("sqlalchemy orm: ok")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([int(p) for p in sys.argv[1:]])
