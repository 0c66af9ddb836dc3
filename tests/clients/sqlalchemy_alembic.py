#!/usr/bin/env python3
"""SQLAlchemy 2 ORM + Alembic against a sqlkeeper server.

Usage: sqlalchemy_alembic.py HOST:PORT   (or a postgresql:// URL)

Needs sqlalchemy>=2,<3, psycopg2-binary and alembic. Expects a fresh server:
it creates the tables sa_author, sa_book, account, entry and alembic_version.
Prints one line per step; any failure raises, so Python prints the traceback
and exits non-zero. Set SQLKEEPER_ECHO=1 to log every statement SQLAlchemy sends.
Writes no files (bytecode caching is off for the Alembic scripts it loads).
"""
import datetime
import os
import sys
import threading
import uuid

sys.dont_write_bytecode = True

from pathlib import Path  # noqa: E402

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from sqlalchemy import (  # noqa: E402
    DATE,
    INTEGER,
    CheckConstraint,
    TIMESTAMP,
    UUID,
    VARCHAR,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError  # noqa: E402
from sqlalchemy.dialects.postgresql import ARRAY  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

HERE = Path(__file__).resolve().parent
ECHO = os.environ.get("SQLKEEPER_ECHO") == "1"


def step(msg: str) -> None:
    print(f"== {msg}", flush=True)


def url_from_arg(arg: str) -> str:
    if "://" in arg:
        scheme, rest = arg.split("://", 1)
        if scheme in ("postgres", "postgresql"):
            scheme = "postgresql+psycopg2"
        return f"{scheme}://{rest}"
    return f"postgresql+psycopg2://postgres@{arg}/postgres"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Book(Base):
    __tablename__ = "sa_book"
    __table_args__ = (
        UniqueConstraint("author_id", "title", name="sa_book_author_title"),
        CheckConstraint("pages >= 0", name="sa_book_pages_not_negative"),
        Index("ix_sa_book_next_page", text("(pages + 1)")),
        {"comment": "books on the shelf"},
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id"))
    title: Mapped[str] = mapped_column(String(100), comment="as printed on the cover")
    pages: Mapped[int | None]
    published: Mapped[datetime.date | None] = mapped_column(index=True)
    added_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    ref: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4)


class Shelf(Base):
    """Array columns, as applications declare tags and lists."""

    __tablename__ = "sa_shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(20)), server_default=text("'{}'"))
    counts: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))


def arrays(engine) -> None:
    step("ORM: array columns written, queried with any/contains/overlap, updated, reflected")
    with Session(engine) as s:
        s.add_all([Shelf(id=1, tags=["a", "b c"], counts=[1, None, 3]), Shelf(id=2, counts=[])])
        s.commit()
        got = [(x.id, x.tags, x.counts) for x in s.scalars(select(Shelf).order_by(Shelf.id))]
        assert got == [(1, ["a", "b c"], [1, None, 3]), (2, [], [])], got
        ids = lambda q: [x.id for x in s.scalars(select(Shelf).where(q).order_by(Shelf.id))]
        assert ids(Shelf.tags.any("a")) == [1]
        assert ids(Shelf.tags.contains(["b c"])) == [1]
        assert ids(Shelf.counts.overlap([3, 4])) == [1]
        assert ids(Shelf.counts == []) == [2]
        shelf = s.get(Shelf, 1)
        shelf.tags = shelf.tags + ["d"]
        s.commit()
        assert s.get(Shelf, 1).tags == ["a", "b c", "d"]
    cols = {c["name"]: c for c in inspect(engine).get_columns("sa_shelf")}
    tags, counts = cols["tags"], cols["counts"]
    assert isinstance(tags["type"], ARRAY) and isinstance(tags["type"].item_type, VARCHAR), tags
    assert tags["type"].item_type.length == 20, tags
    assert tags["default"] == "'{}'::character varying[]" and tags["nullable"] is False, tags
    assert isinstance(counts["type"].item_type, INTEGER) and counts["nullable"] is True, counts


def orm(engine) -> None:
    step("ORM: metadata.create_all")
    Base.metadata.create_all(engine)

    step("ORM: add objects, flush, ids come back via RETURNING")
    with Session(engine) as s:
        ada, bob = Author(name="ada"), Author(name="bob")
        s.add_all([ada, bob])
        s.flush()
        assert isinstance(ada.id, int) and isinstance(bob.id, int), (ada.id, bob.id)
        assert ada.id != bob.id, (ada.id, bob.id)
        book = Book(
            author_id=ada.id, title="Notes", pages=100, published=datetime.date(2024, 2, 29)
        )
        s.add(book)
        s.flush()
        assert isinstance(book.id, int), book.id

        step("ORM: query back in the same transaction")
        names = s.execute(select(Author.name).order_by(Author.id)).scalars().all()
        assert names == ["ada", "bob"], names
        got = s.execute(select(Book).where(Book.author_id == ada.id)).scalar_one()
        assert got is book and got.title == "Notes", got

        step("ORM: UPDATE ... WHERE with rowcount == 1")
        res = s.execute(update(Author).where(Author.id == bob.id).values(name="bobby"))
        assert res.rowcount == 1, res.rowcount
        book.pages = 120  # unit-of-work UPDATE, rowcount checked by the ORM
        s.flush()
        assert s.execute(select(Author.name).where(Author.id == bob.id)).scalar_one() == "bobby"

        step("ORM: commit")
        s.commit()
        ada_id, bob_id, book_id = ada.id, bob.id, book.id

    step("ORM: a new session sees the committed data")
    with Session(engine) as s:
        rows = s.execute(select(Author.id, Author.name).order_by(Author.id)).all()
        assert [tuple(r) for r in rows] == [(ada_id, "ada"), (bob_id, "bobby")], rows
        book = s.get(Book, book_id)
        assert book is not None and (book.author_id, book.pages) == (ada_id, 120), book

    step("ORM: dates, timestamps and uuids come back as Python objects")
    with Session(engine) as s:
        # psycopg2 builds them by the column's type in the row description; a column described
        # as text gave strings, which SQLAlchemy passes through.
        book = s.get(Book, book_id)
        assert book.published == datetime.date(2024, 2, 29), repr(book.published)
        added = book.added_at
        assert isinstance(added, datetime.datetime) and added.tzinfo is not None, repr(added)
        now = datetime.datetime.now(datetime.timezone.utc)
        assert abs((now - added).total_seconds()) < 300, (now, added)
        assert isinstance(book.ref, uuid.UUID), repr(book.ref)
        found = s.execute(select(Book.id).where(Book.ref == book.ref)).scalar_one()
        assert found == book_id, found
        later = s.execute(
            select(func.count()).select_from(Book).where(Book.added_at > now - datetime.timedelta(hours=1))
        ).scalar_one()
        assert later == 1, later

    step("ORM: aggregates and expressions of integer columns come back as numbers")
    with Session(engine) as s:
        # psycopg2 turns values into Python objects by the type in the row description: an
        # untyped (text) column would give the string '120'.
        total = s.execute(select(func.sum(Book.pages))).scalar_one()
        assert total == 120 and isinstance(total, int), repr(total)
        top = s.execute(select(func.max(Book.pages) + 1)).scalar_one()
        assert top == 121 and isinstance(top, int), repr(top)
        # SQLAlchemy's Numeric result processor raised "Unknown PG numeric type: 25" for text.
        avg = s.execute(select(func.avg(Book.pages))).scalar_one()
        assert float(avg) == 120.0 and not isinstance(avg, str), repr(avg)

    step("ORM: yield_per and stream_results read through a server-side cursor, typed")
    with Session(engine) as s:
        # psycopg2 sends DECLARE ... CURSOR FOR ... and FETCH FORWARD n for these.
        pages = [r.pages for r in s.execute(select(Book.pages).execution_options(yield_per=1))]
        assert pages == [120], pages
        total = s.execute(
            select(func.sum(Book.pages)).execution_options(stream_results=True)
        ).scalar_one()
        assert total == 120 and isinstance(total, int), repr(total)

    step("ORM: a rolled-back session leaves nothing")
    with Session(engine) as s:
        ghost = Author(name="ghost")
        s.add(ghost)
        s.flush()
        assert isinstance(ghost.id, int), ghost.id
        s.add(Book(author_id=ghost.id, title="Gone", pages=1))
        s.flush()
        n = s.execute(select(func.count()).select_from(Author)).scalar_one()
        assert n == 3, n
        s.rollback()
    with Session(engine) as s:
        n = s.execute(select(func.count()).select_from(Author)).scalar_one()
        assert n == 2, n
        n = s.execute(select(func.count()).select_from(Book)).scalar_one()
        assert n == 1, n
        assert s.execute(select(Author).where(Author.name == "ghost")).first() is None


def reflection(engine) -> None:
    # What PostgreSQL's inspector answers for the ORM's tables (checked against PostgreSQL 15).
    step("Reflection: inspect() tables, views, columns, keys, indexes, checks, comments, sequences")
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    assert {"sa_author", "sa_book"} <= tables, tables
    cols = {c["name"]: c for c in insp.get_columns("sa_book")}
    assert list(cols) == ["id", "author_id", "title", "pages", "published", "added_at", "ref"], cols
    assert isinstance(cols["id"]["type"], INTEGER) and cols["id"]["nullable"] is False, cols["id"]
    assert cols["id"]["default"] == "nextval('sa_book_id_seq'::regclass)", cols["id"]
    assert cols["id"]["autoincrement"] is True, cols["id"]
    assert isinstance(cols["title"]["type"], VARCHAR) and cols["title"]["type"].length == 100
    assert cols["pages"]["nullable"] is True and isinstance(cols["pages"]["type"], INTEGER)
    assert isinstance(cols["published"]["type"], DATE), cols["published"]
    assert isinstance(cols["added_at"]["type"], TIMESTAMP) and cols["added_at"]["type"].timezone
    assert cols["added_at"]["default"] == "now()", cols["added_at"]
    assert isinstance(cols["ref"]["type"], UUID), cols["ref"]
    fks = insp.get_foreign_keys("sa_book")
    assert [
        (f["name"], f["constrained_columns"], f["referred_table"], f["referred_columns"])
        for f in fks
    ] == [("sa_book_author_id_fkey", ["author_id"], "sa_author", ["id"])], fks
    pk = insp.get_pk_constraint("sa_book")
    assert (pk["name"], pk["constrained_columns"]) == ("sa_book_pkey", ["id"]), pk
    uniques = insp.get_unique_constraints("sa_book")
    assert [(u["name"], u["column_names"]) for u in uniques] == [
        ("sa_book_author_title", ["author_id", "title"])
    ], uniques
    # Indexes come back through arrays of text, booleans and integers built over two derived
    # tables of pg_index's int2vector columns.
    indexes = insp.get_indexes("sa_book")
    assert [
        (i["name"], i["unique"], i["column_names"], i.get("expressions"), i.get("duplicates_constraint"))
        for i in indexes
    ] == [
        ("ix_sa_book_next_page", False, [None], ["(pages + 1)"], None),
        ("ix_sa_book_published", False, ["published"], None, None),
        ("sa_book_author_title", True, ["author_id", "title"], None, "sa_book_author_title"),
    ], indexes
    checks = insp.get_check_constraints("sa_book")
    assert [(c["name"], c["sqltext"]) for c in checks] == [
        ("sa_book_pages_not_negative", "pages >= 0")
    ], checks
    # COMMENT ON, which create_all sends for these comments, read back.
    assert insp.get_table_comment("sa_book") == {"text": "books on the shelf"}
    assert cols["title"]["comment"] == "as printed on the cover", cols["title"]
    assert cols["pages"]["comment"] is None, cols["pages"]
    # A view: listed, and its definition as PostgreSQL's pg_get_viewdef(oid) prints it.
    with engine.begin() as c:
        c.execute(text("CREATE VIEW sa_long_books AS SELECT id, title FROM sa_book WHERE pages > 100"))
    insp = inspect(engine)
    assert insp.get_view_names() == ["sa_long_books"], insp.get_view_names()
    definition = insp.get_view_definition("sa_long_books")
    assert definition == (
        " SELECT sa_book.id,\n    sa_book.title\n   FROM sa_book\n  WHERE (sa_book.pages > 100);"
    ), repr(definition)
    with engine.begin() as c:
        c.execute(text("DROP VIEW sa_long_books"))
    seqs = set(insp.get_sequence_names())
    assert {"sa_author_id_seq", "sa_book_id_seq"} <= seqs, seqs
    assert insp.has_table("sa_book") and not insp.has_table("sa_nothing")


# Several sessions at once, as an application server runs them: each unit of work inserts an
# author and books (ids back through RETURNING), updates its own rows, reads them back and
# commits. They touch different rows, so PostgreSQL raises no serialization failure, and
# neither may sqlkeeper.
WRITERS = 6
UNITS_PER_WRITER = 15


def unit_of_work(engine, writer: int, n: int) -> None:
    with Session(engine) as s:
        a = Author(name=f"w{writer}-{n}")
        s.add(a)
        s.flush()
        books = [Book(author_id=a.id, title=f"t{writer}-{n}-{i}", pages=i) for i in range(3)]
        s.add_all(books)
        s.flush()
        assert len({b.id for b in books}) == 3, [b.id for b in books]
        a.name = f"w{writer}-{n}!"
        s.flush()
        count = s.execute(select(func.count()).select_from(Book).where(Book.author_id == a.id)).scalar_one()
        assert count == 3, count
        s.commit()


def writers(engine, stop: threading.Event | None, units: int | None) -> tuple[list, list]:
    """Starts WRITERS threads running units of work (`units` each, or until `stop`)."""
    errors: list = []
    done: list = []

    def run(w: int) -> None:
        n = 0
        try:
            # At least one unit each, so the writes overlap what runs meanwhile.
            while (units is None or n < units) and not (stop and stop.is_set() and n > 0):
                unit_of_work(engine, w, n)
                n += 1
        except Exception as e:  # reported by the caller
            errors.append(f"writer {w}: {e!r}")
        done.append(n)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    return threads, [errors, done]


def concurrent_orm(engine) -> None:
    step(f"ORM: {WRITERS} sessions at once, {UNITS_PER_WRITER} units of work each, no 40001")
    threads, (errors, done) = writers(engine, None, UNITS_PER_WRITER)
    for t in threads:
        t.join()
    assert not errors, errors
    with Session(engine) as s:
        n = s.execute(select(func.count()).select_from(Author).where(Author.name.like("w%!"))).scalar_one()
        assert n == WRITERS * UNITS_PER_WRITER, n
        n = s.execute(select(func.count()).select_from(Book).where(Book.title.like("t%"))).scalar_one()
        assert n == 3 * WRITERS * UNITS_PER_WRITER, n


# The schema the migrations in alembic/versions end at, as an application's models would
# declare it: `alembic check` compares it with what it reflects from the server.
HEAD = MetaData()
Table(
    "account",
    HEAD,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("status", String(20)),
    Index("ix_account_status", "status"),
)
Table(
    "entry",
    HEAD,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("account.id"), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("note", String(100)),
)


def alembic(engine, url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "alembic"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["engine"] = engine
    cfg.attributes["target_metadata"] = [Base.metadata, HEAD]

    step(f"Alembic: upgrade head while {WRITERS} sessions write, no 40001")
    stop = threading.Event()
    threads, (errors, done) = writers(engine, stop, None)
    try:
        command.upgrade(cfg, "head")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert sum(done) > 0, done

    step("Alembic: verify schema and data at head")
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003"]
        accounts = c.execute(text("SELECT name, status FROM account ORDER BY id")).all()
        assert [tuple(r) for r in accounts] == [("alice", "active"), ("bob", "active")], accounts
        notes = c.execute(text("SELECT note FROM entry ORDER BY id")).scalars().all()
        assert notes == ["opening alice", "opening bob"], notes
        c.rollback()

    step("Alembic: check (autogenerate finds no difference from the models)")
    command.check(cfg)

    step("Alembic: downgrade -1")
    command.downgrade(cfg, "-1")

    step("Alembic: verify the column has its old name again")
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0002"]
        memos = c.execute(text("SELECT memo FROM entry ORDER BY id")).scalars().all()
        assert memos == ["opening alice", "opening bob"], memos
        c.rollback()
    with engine.connect() as c:
        try:
            c.execute(text("SELECT note FROM entry"))
        except DBAPIError:
            pass
        else:
            raise AssertionError("entry.note still exists after downgrade -1")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT | postgresql://...")
    url = url_from_arg(sys.argv[1])
    step(f"connect {url}")
    engine = create_engine(url, echo=ECHO, use_native_hstore=False)
    try:
        with engine.connect() as c:
            assert c.execute(text("SELECT 1")).scalar_one() == 1
        orm(engine)
        reflection(engine)
        arrays(engine)
        concurrent_orm(engine)
        alembic(engine, url)
    finally:
        engine.dispose()
    step("OK")


if __name__ == "__main__":
    main()
