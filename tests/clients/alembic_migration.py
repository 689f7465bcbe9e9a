#!/usr/bin/env python3
"""Alembic against Shoal's PostgreSQL endpoint, as a project uses it: models (with table and
column comments) created with SQLAlchemy's create_all; autogenerate compared with the reflected
schema finds nothing to do;
then a migration script (run by Alembic's own command API from a migration directory made by
`alembic init`) adds a column and an index, alters a column, and adds a foreign key — upgraded,
checked by reflection on every node, downgraded and checked again.

Usage: alembic_migration.py WRITE_PORT [READ_PORT ...]
(prints "alembic migration: ok" on success; DDL goes to the first port, reflection is checked
on every port given, waiting up to 10 s for a node that lags)
"""

import sys
import tempfile
import textwrap
import time
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (Boolean, Column, DateTime, ForeignKey, Integer, MetaData, Numeric, String,
                        Table, Text, create_engine, func, inspect)

metadata = MetaData()
Table("al_authors", metadata,
      Column("id", Integer, primary_key=True),
      Column("name", String(80), nullable=False, unique=True, comment="as printed"),
      Column("bio", Text),
      comment="people who write")
Table("al_books", metadata,
      Column("id", Integer, primary_key=True),
      Column("author_id", Integer, ForeignKey("al_authors.id"), nullable=False, index=True),
      Column("title", String(120), nullable=False),
      Column("price", Numeric(10, 2)),
      Column("in_print", Boolean, nullable=False),
      Column("added_at", DateTime(timezone=True), server_default=func.now()))
Table("al_shelves", metadata,
      Column("id", Integer, primary_key=True),
      Column("label", String(40)),
      Column("book_id", Integer))

MIGRATION = '''
"""shelf position, a longer label, shelves refer to books

Revision ID: a1b2c3d4e5f6
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("al_shelves", sa.Column("position", sa.Integer(), nullable=True))
    op.create_index("ix_al_shelves_position", "al_shelves", ["position"])
    op.alter_column("al_shelves", "label", type_=sa.String(100), existing_type=sa.String(40),
                    nullable=False, existing_nullable=True)
    op.create_foreign_key("al_shelves_book_id_fkey", "al_shelves", "al_books",
                          ["book_id"], ["id"])


def downgrade():
    op.drop_constraint("al_shelves_book_id_fkey", "al_shelves", type_="foreignkey")
    op.alter_column("al_shelves", "label", type_=sa.String(40), existing_type=sa.String(100),
                    nullable=True, existing_nullable=False)
    op.drop_index("ix_al_shelves_position", table_name="al_shelves")
    op.drop_column("al_shelves", "position")
'''


def url(port):
    return f"postgresql+psycopg://shoal@127.0.0.1:{port}/shoal"


def eventually(port, check):
    """Runs check(engine) on the node at `port` until it passes (a follower may lag)."""
    engine = create_engine(url(port))
    deadline = time.time() + 10
    try:
        while True:
            try:
                return check(engine)
            except AssertionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


def no_changes_to_autogenerate(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"autogenerate found differences: {diff}"


def autogenerate_sees_a_change(engine):
    """The comparison is real: a model with one more column and a wider one differs."""
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["al_books"].append_column(Column("isbn", String(13)))
    changed.tables["al_shelves"].c.label.type = String(60)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), changed)
    kinds = sorted(d[0] if isinstance(d, tuple) else d[0][0] for d in diff)
    assert kinds == ["add_column", "modify_type"], diff


def shelves(engine):
    insp = inspect(engine)
    columns = {c["name"]: c for c in insp.get_columns("al_shelves")}
    indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("al_shelves")}
    keys = [(k["constrained_columns"], k["referred_table"]) for k in insp.get_foreign_keys("al_shelves")]
    return columns, indexes, keys


def upgraded(engine):
    columns, indexes, keys = shelves(engine)
    assert "position" in columns, columns
    assert indexes.get("ix_al_shelves_position") == ["position"], indexes
    assert columns["label"]["type"].length == 100, columns["label"]
    assert columns["label"]["nullable"] is False, columns["label"]
    assert keys == [(["book_id"], "al_books")], keys


def downgraded(engine):
    columns, indexes, keys = shelves(engine)
    assert "position" not in columns, columns
    assert "ix_al_shelves_position" not in indexes, indexes
    assert columns["label"]["type"].length == 40, columns["label"]
    assert columns["label"]["nullable"] is True, columns["label"]
    assert keys == [], keys


def main():
    ports = [int(p) for p in sys.argv[1:]]
    if not ports:
        sys.exit(__doc__)
    engine = create_engine(url(ports[0]))
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO al_authors (id, name) VALUES (1, 'Ann');"
            "INSERT INTO al_books (id, author_id, title, in_print) VALUES (1, 1, 'One', true);"
            "INSERT INTO al_shelves (id, label, book_id) VALUES (1, 'top', 1)")
    for port in ports:
        eventually(port, no_changes_to_autogenerate)
    autogenerate_sees_a_change(engine)
    insp = inspect(engine)
    assert insp.get_table_comment("al_authors") == {"text": "people who write"}
    assert {c["name"]: c.get("comment") for c in insp.get_columns("al_authors")}["name"] == "as printed"

    with tempfile.TemporaryDirectory() as directory:
        ini = str(Path(directory) / "alembic.ini")
        command.init(Config(ini), str(Path(directory) / "migrations"))
        config = Config(ini)
        config.set_main_option("script_location", str(Path(directory) / "migrations"))
        config.set_main_option("sqlalchemy.url", url(ports[0]))
        versions = Path(directory) / "migrations" / "versions"
        (versions / "a1b2c3d4e5f6_shelves.py").write_text(textwrap.dedent(MIGRATION))
        command.upgrade(config, "head")
        for port in ports:
            eventually(port, upgraded)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert version == "a1b2c3d4e5f6", version
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, label, book_id FROM al_shelves").all()
        assert [tuple(r) for r in rows] == [(1, "top", 1)], rows
        command.downgrade(config, "base")
        for port in ports:
            eventually(port, downgraded)
    engine.dispose()
    print("alembic migration: ok")


if __name__ == "__main__":
    main()
