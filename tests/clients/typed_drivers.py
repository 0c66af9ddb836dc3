#!/usr/bin/env python3
"""Round trips of typed values with asyncpg and psycopg 3 against a server.

Usage: typed_drivers.py HOST:PORT

asyncpg prepares every statement without parameter types and encodes each argument by the
type the server describes for it, in binary; it decodes results in binary by the described
column types. So this checks parameter type inference, result types and the binary forms:
values at the edges of their types are written with untyped statements and read back as the
Python objects PostgreSQL gives, and found again by parameters of their types. psycopg 3 binds
parameters on the server and reads results in text and, with binary cursors, in binary.
Expects a fresh server (creates tables asyncpg_rt and psycopg_rt). Prints "== OK" at the end;
any failure raises. The test runs it against PostgreSQL 15 too.
"""
import asyncio
import datetime
import decimal
import io
import json
import sys
import uuid

import asyncpg
import psycopg
from psycopg.types.json import Jsonb

UTC = datetime.timezone.utc

TABLE = """CREATE TABLE asyncpg_rt (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz,
    u uuid, j jsonb, b bytea, t text, v varchar(12), i2 smallint, i8 bigint,
    f8 double precision, ok boolean, n numeric(12,2))"""

ROWS = [
    (
        1,
        datetime.date(1, 1, 1),
        datetime.datetime(2024, 2, 29, 10, 0, 0, 123456),
        datetime.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        uuid.UUID(int=0),
        '{"a": {"\u00e9": "\u2603"}, "b": [1, 2.5, null]}',
        b"\x00\x01\x7f\x80\xff",
        "h\u00e9llo \u2603 \U0001F600",
        "twelve chars",
        -32768,
        -9223372036854775808,
        -2.25,
        True,
        decimal.Decimal("-9999999999.99"),
    ),
    (
        2,
        datetime.date(9999, 12, 31),
        datetime.datetime(1970, 1, 1),
        datetime.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
        uuid.UUID(int=2**128 - 1),
        "[]",
        b"",
        "",
        "",
        32767,
        9223372036854775807,
        0.5,
        False,
        decimal.Decimal("0.50"),
    ),
    (3,) + (None,) * 13,
]


def step(msg):
    print(f"== {msg}", flush=True)


async def main(addr):
    host, port = addr.rsplit(":", 1)
    step("asyncpg: connect")
    conn = await asyncpg.connect(host=host, port=int(port), user="postgres", database="postgres")
    try:
        step("create the table")
        await conn.execute(TABLE)

        step("insert with an untyped prepared statement (types from the server)")
        marks = ", ".join(f"${i}" for i in range(1, 15))
        await conn.executemany(f"INSERT INTO asyncpg_rt VALUES ({marks})", ROWS)

        step("read back: the Python objects PostgreSQL gives")
        got = [tuple(r) for r in await conn.fetch("SELECT * FROM asyncpg_rt ORDER BY id")]
        assert got == ROWS, (got, ROWS)
        want = [int, datetime.date, datetime.datetime, datetime.datetime, uuid.UUID, str,
                bytes, str, str, int, int, float, bool, decimal.Decimal]
        assert all(isinstance(v, k) for v, k in zip(got[0], want)), [type(v) for v in got[0]]
        # numeric keeps the column's scale: 0.50, not 0.5.
        assert [str(r[13]) for r in got] == ["-9999999999.99", "0.50", "None"], got

        step("find rows by parameters of their types")
        n = await conn.fetchval(
            "SELECT count(*) FROM asyncpg_rt WHERE tz < $1 AND d >= $2 AND u = $3",
            datetime.datetime(2000, 1, 1, tzinfo=UTC), datetime.date(1, 1, 1), uuid.UUID(int=0))
        assert n == 1, n
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM asyncpg_rt WHERE i8 > $1 OR t = $2 ORDER BY id LIMIT $3", 0, "", 10)]
        assert ids == [2], ids

        step("update and upsert with untyped parameters")
        await conn.execute("UPDATE asyncpg_rt SET ok = $1, i2 = $2, ts = $3 WHERE id = $4",
                           True, 7, datetime.datetime(2001, 2, 3, 4, 5, 6, 7), 3)
        await conn.execute(
            "INSERT INTO asyncpg_rt (id, i8) VALUES ($1, $2) "
            "ON CONFLICT (id) DO UPDATE SET i8 = excluded.i8", 3, 42)
        row = await conn.fetchrow("SELECT ok, i2, ts, i8 FROM asyncpg_rt WHERE id = $1", 3)
        assert tuple(row) == (True, 7, datetime.datetime(2001, 2, 3, 4, 5, 6, 7), 42), row

        step("typed expressions")
        row = await conn.fetchrow(
            "SELECT now() AS now, $1::date AS d, $2::timestamptz AS tz, gen_random_uuid() AS u",
            datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 10, 0, tzinfo=UTC))
        assert isinstance(row["now"], datetime.datetime) and row["now"].tzinfo is not None, row
        assert row["d"] == datetime.date(2024, 2, 29), row
        assert row["tz"] == datetime.datetime(2024, 2, 29, 10, 0, tzinfo=UTC), row
        assert isinstance(row["u"], uuid.UUID), row
        doc = json.loads(await conn.fetchval("SELECT j FROM asyncpg_rt WHERE id = 1"))
        assert doc == {"a": {"\u00e9": "\u2603"}, "b": [1, 2.5, None]}, doc

        step("asyncpg: copy_records_to_table (COPY FROM STDIN in binary)")
        await conn.execute("CREATE TABLE asyncpg_copy (id int PRIMARY KEY, name text, "
                           "at timestamptz, n numeric(8,2), b bytea, ok boolean)")
        records = [(i, f'name {i}\t\\,"', datetime.datetime(2024, 1, 1, tzinfo=UTC)
                    + datetime.timedelta(seconds=i), decimal.Decimal(f"{i}.25"),
                    bytes([i % 256]) * 3, i % 2 == 0) for i in range(1, 2001)]
        records.append((0, None, None, None, None, None))
        status = await conn.copy_records_to_table("asyncpg_copy", records=records)
        assert status == "COPY 2001", status
        got = [tuple(r) for r in await conn.fetch("SELECT * FROM asyncpg_copy ORDER BY id")]
        assert got == sorted(records), got[:3]

        step("asyncpg: a COPY that violates a key writes nothing")
        try:
            await conn.copy_records_to_table(
                "asyncpg_copy", records=[(5000, "new", None, None, None, None),
                                         (1, "duplicate", None, None, None, None)],
                columns=["id", "name", "at", "n", "b", "ok"])
            raise AssertionError("a duplicate key was copied")
        except asyncpg.UniqueViolationError:
            pass
        assert await conn.fetchval("SELECT count(*) FROM asyncpg_copy") == 2001

        step("asyncpg: copy_from_query and copy_from_table (COPY TO STDOUT)")
        out = io.BytesIO()
        status = await conn.copy_from_query(
            "SELECT id, name, n, ok FROM asyncpg_copy WHERE id < 3 ORDER BY id",
            output=out, format="csv", header=True)
        assert status == "COPY 3", status
        want = b'id,name,n,ok\n0,,,\n1,"name 1\t\\,""",1.25,f\n2,"name 2\t\\,""",2.25,t\n'
        assert out.getvalue() == want, out.getvalue()
        out = io.BytesIO()
        status = await conn.copy_from_table("asyncpg_copy", columns=["id", "b"], output=out)
        assert status == "COPY 2001", status
        lines = out.getvalue().split(b"\n")
        assert b"1\t\\\\x010101" in lines and b"0\t\\N" in lines, lines[:3]

        step("asyncpg: an enum column, through untyped and cast parameters")
        await conn.execute("CREATE TYPE kind AS ENUM ('cat', 'dog')")
        await conn.execute("CREATE TABLE pets (id int PRIMARY KEY, k kind NOT NULL)")
        await conn.execute("INSERT INTO pets VALUES ($1, $2)", 1, "cat")
        await conn.execute("INSERT INTO pets VALUES ($1, $2::kind)", 2, "dog")
        rows = await conn.fetch("SELECT id, k FROM pets ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "cat"), (2, "dog")], rows
        assert await conn.fetchval("SELECT $1::kind", "dog") == "dog"
        try:
            await conn.execute("INSERT INTO pets VALUES ($1, $2)", 3, "cow")
            raise AssertionError("a value that is no label was stored")
        except asyncpg.InvalidTextRepresentationError:
            pass
        counts = await conn.fetch("SELECT k, count(*) FROM pets GROUP BY k ORDER BY k")
        assert [tuple(r) for r in counts] == [("cat", 1), ("dog", 1)], counts

        # asyncpg learns each array type's element type from its type introspection query
        # (a recursive query over pg_type), then binds and reads arrays in binary.
        step("asyncpg: arrays through untyped statements (binary), edges, empty and NULL")
        await conn.execute(
            "CREATE TABLE asyncpg_arr (id int PRIMARY KEY, i int[], b bigint[], t text[], "
            "f float8[], ok boolean[], n numeric(6,2)[], u uuid[], d date[], tz timestamptz[])")
        arrays = [
            (1, [1, None, -2147483648, 2147483647], [-2**63, 2**63 - 1],
             ["a", "b c", "", "NULL", '"\\', "h\u00e9llo \u2603", None], [1.5, -2.25, 1e300],
             [True, False, None], [decimal.Decimal("1.50"), decimal.Decimal("-9999.99")],
             [uuid.UUID(int=7)], [datetime.date(1, 1, 1), datetime.date(9999, 12, 31)],
             [datetime.datetime(2024, 2, 29, 10, 0, 0, 123456, tzinfo=UTC)]),
            (2, [], [], [], [], [], [], [], [], []),
            (3,) + (None,) * 9,
        ]
        marks = ", ".join(f"${i}" for i in range(1, 11))
        await conn.executemany(f"INSERT INTO asyncpg_arr VALUES ({marks})", arrays)
        got = [tuple(r) for r in await conn.fetch("SELECT * FROM asyncpg_arr ORDER BY id")]
        assert got == arrays, (got, arrays)
        assert [str(v) for v in got[0][6]] == ["1.50", "-9999.99"], got[0][6]
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM asyncpg_arr WHERE i = $1 OR $2 = ANY (t) OR id = ANY ($3) ORDER BY id",
            [], "b c", [3])]
        assert ids == [1, 2, 3], ids

        step("asyncpg: float specials through untyped statements (binary)")
        await conn.execute("CREATE TABLE asyncpg_float (id int PRIMARY KEY, f float8, r real)")
        inf, nan = float("inf"), float("nan")
        floats = [(1, inf, -inf), (2, -inf, nan), (3, nan, 3.4028234663852886e38),
                  (4, 5e-324, 1.401298464324817e-45), (5, 1.7976931348623157e308, None)]
        await conn.executemany("INSERT INTO asyncpg_float VALUES ($1, $2, $3)", floats)
        got = [tuple(r) for r in await conn.fetch("SELECT * FROM asyncpg_float ORDER BY id")]
        assert [tuple(map(repr, r)) for r in got] == [tuple(map(repr, r)) for r in floats], got
        by = [await conn.fetchval("SELECT id FROM asyncpg_float WHERE f = $1", f)
              for f in (nan, -inf, 5e-324)]
        assert by == [3, 2, 4], by
        order = [r["id"] for r in await conn.fetch(
            "SELECT id FROM asyncpg_float ORDER BY r DESC NULLS LAST, id")]
        assert order == [2, 3, 4, 1, 5], order
        sums = tuple(await conn.fetchrow("SELECT sum(f), avg(r) FROM asyncpg_float"))
        assert repr(sums) == "(nan, nan)", sums
    finally:
        await conn.close()


def psycopg3(addr):
    host, port = addr.rsplit(":", 1)
    dsn = f"host={host} port={port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        step("psycopg 3: server-side binding")
        conn.execute("CREATE TABLE psycopg_rt (id int PRIMARY KEY, d date, tz timestamptz, "
                     "u uuid, j jsonb, b bytea, i8 bigint, ok boolean, v varchar(5), "
                     "n numeric(8,3))")
        row = (1, datetime.date(2024, 2, 29),
               datetime.datetime(2024, 2, 29, 10, 0, 0, 5, tzinfo=UTC), uuid.UUID(int=5),
               Jsonb({"a": [1, "x"]}), b"\x00\xff", 2**62, True, "abc",
               decimal.Decimal("-12.5"))
        conn.execute("INSERT INTO psycopg_rt VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     row)
        want = row[:4] + ({"a": [1, "x"]},) + row[5:]
        for binary in (False, True):
            step(f"psycopg 3: {'binary' if binary else 'text'} cursor")
            cur = conn.cursor(binary=binary)
            got = cur.execute("SELECT * FROM psycopg_rt WHERE id = %s AND tz = %s",
                              (1, row[2])).fetchone()
            assert got == want, (got, want)
            assert str(got[9]) == "-12.500", got
            # A numeric parameter in binary (psycopg's binary dumper) finds the row.
            n = cur.execute("SELECT id FROM psycopg_rt WHERE n = %b",
                            (decimal.Decimal("-12.500"),)).fetchone()
            assert n == (1,), n
        # Aggregates of table columns are of PostgreSQL's result types (`sum` of an integer
        # is a bigint, of a bigint a numeric; `avg` of an integer a numeric; `max` keeps the
        # type), so they come back as Python ints, Decimals and dates, not strings.
        conn.execute("INSERT INTO psycopg_rt (id, d, i8, n) VALUES (2, '2024-03-01', 5, 7.25)")
        for binary in (False, True):
            step(f"psycopg 3: aggregate types, {'binary' if binary else 'text'} cursor")
            cur = conn.cursor(binary=binary)
            got = cur.execute("SELECT sum(id), sum(i8), avg(id), max(d), min(n), "
                              "sum(p.n) AS total FROM psycopg_rt AS p").fetchone()
            assert got[0] == 3 and type(got[0]) is int, got
            assert got[1] == 2**62 + 5 and isinstance(got[1], decimal.Decimal), got
            assert got[2] == decimal.Decimal("1.5"), got
            assert got[3] == datetime.date(2024, 3, 1), got
            assert got[4] == decimal.Decimal("-12.5"), got
            assert got[5] == decimal.Decimal("-5.25"), got
            oids = [d.type_code for d in cur.description]
            assert oids == [20, 1700, 1700, 1082, 1700, 1700], oids

        step("psycopg 3: float specials, parameters and cursors in text and binary")
        conn.execute("CREATE TABLE psycopg_float (id int PRIMARY KEY, f float8)")
        specials = [float("inf"), float("-inf"), float("nan"), 5e-324]
        for i, f in enumerate(specials):
            conn.execute("INSERT INTO psycopg_float VALUES (%s, %s)", (i, f))
            conn.execute("INSERT INTO psycopg_float VALUES (%b, %b)", (10 + i, f))
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            got = cur.execute("SELECT f FROM psycopg_float ORDER BY id").fetchall()
            assert [repr(r[0]) for r in got] == [repr(f) for f in specials] * 2, got
            found = cur.execute("SELECT count(*) FROM psycopg_float WHERE f = %b",
                                (float("nan"),)).fetchone()
            assert found == (2,), found

        step("psycopg 3: arrays, text and binary")
        conn.execute("CREATE TABLE psycopg_arr (id int PRIMARY KEY, i int[], t text[], "
                     "n numeric(8,3)[], ok boolean[])")
        arow = (1, [3, None, -7], ["x", "y z", None, ""], [decimal.Decimal("1.500")],
                [True, False])
        conn.execute("INSERT INTO psycopg_arr VALUES (%s, %s, %s, %s, %s)", arow)
        conn.execute("INSERT INTO psycopg_arr VALUES (%b, %b, %b, %b, %b)",
                     (2, [1], ["b"], [decimal.Decimal("-2")], [None]))
        conn.execute("INSERT INTO psycopg_arr VALUES (3, '{}', '{}', '{}', '{}')")
        conn.execute("INSERT INTO psycopg_arr (id) VALUES (4)")
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            got = cur.execute("SELECT * FROM psycopg_arr ORDER BY id").fetchall()
            assert got == [arow, (2, [1], ["b"], [decimal.Decimal("-2.000")], [None]),
                           (3, [], [], [], []), (4, None, None, None, None)], got
            assert str(got[0][3][0]) == "1.500", got

        step("psycopg 3: server-side (named) cursors, with a bound parameter")
        with conn.transaction():
            with conn.cursor(name="rt_rows") as cur:
                cur.execute("SELECT id, d, i8, n FROM psycopg_rt WHERE id >= %s ORDER BY id", (1,))
                first = cur.fetchone()
                assert first == (1, row[1], 2**62, decimal.Decimal("-12.500")), first
                rest = cur.fetchmany(5)
                assert rest == [(2, datetime.date(2024, 3, 1), 5, decimal.Decimal("7.250"))], rest
                assert [d.name for d in cur.description] == ["id", "d", "i8", "n"], cur.description
                assert cur.fetchall() == []

        step("psycopg 3: copy() rows in, text and binary, then out")
        conn.execute("CREATE TABLE psycopg_copy (id int PRIMARY KEY, t text, "
                     "tz timestamptz, j jsonb)")
        at = datetime.datetime(2024, 2, 29, 10, 0, 0, 5, tzinfo=UTC)
        types = ["int4", "text", "timestamptz", "jsonb"]
        with conn.cursor() as cur:
            with cur.copy("COPY psycopg_copy (id, t, tz, j) FROM STDIN") as cp:
                for i in range(1, 101):
                    cp.write_row((i, f"line\n{i}\\", at, Jsonb({"i": i})))
            assert cur.rowcount == 100, cur.rowcount
            with cur.copy("COPY psycopg_copy FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(types)
                cp.write_row((101, "binary", at, Jsonb([1, None])))
                cp.write_row((102, None, None, None))
            with cur.copy("COPY (SELECT id, t, tz, j FROM psycopg_copy ORDER BY id) "
                          "TO STDOUT") as cp:
                cp.set_types(types)
                text_rows = list(cp.rows())
            with cur.copy("COPY psycopg_copy TO STDOUT (FORMAT BINARY)") as cp:
                cp.set_types(types)
                binary_rows = sorted(cp.rows(), key=lambda r: r[0])
        want = [(i, f"line\n{i}\\", at, {"i": i}) for i in range(1, 101)]
        want += [(101, "binary", at, [1, None]), (102, None, None, None)]
        assert text_rows == want, text_rows[:2]
        assert binary_rows == want, binary_rows[:2]
        # The raw COPY text, as PostgreSQL writes it.
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT id, t FROM psycopg_copy WHERE id IN (1, 102) "
                          "ORDER BY id) TO STDOUT (FORMAT csv, FORCE_QUOTE (t))") as cp:
                raw = b"".join(bytes(b) for b in cp)
        assert raw == b'1,"line\n1\\"\n102,\n', raw

        step("psycopg 3: pipeline mode (many statements before one Sync)")
        with conn.pipeline():
            for i in range(200, 210):
                conn.execute("INSERT INTO psycopg_copy (id, t) VALUES (%s, %s)", (i, f"p{i}"))
            cur = conn.execute("SELECT count(*), max(t) FROM psycopg_copy WHERE id >= %s", (200,))
        assert cur.fetchone() == (10, "p209")

        step("psycopg 3: executemany")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO psycopg_copy (id, t) VALUES (%s, %s)",
                            [(i, f"m{i}") for i in range(300, 320)])
            assert cur.rowcount == 20, cur.rowcount
            got = cur.execute("SELECT count(*), min(t) FROM psycopg_copy WHERE id >= 300").fetchone()
            assert got == (20, "m300"), got


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    psycopg3(sys.argv[1])
    print("== OK", flush=True)
