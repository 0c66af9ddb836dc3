#!/usr/bin/env python3
"""Password logins (SCRAM-SHA-256) with asyncpg, psycopg 3 and psycopg2.

Usage: auth_clients.py PASSWORD HOST:PORT

The server requires the superuser's password: the right one logs in and runs a query; a wrong
one, and the right one for another user, fail with 28P01 (asyncpg reads the SQLSTATE; libpq,
under psycopg, reports the server's message). Prints "== OK" at the end; any failure raises.
"""
import asyncio
import sys

import asyncpg
import psycopg
import psycopg2

FAILED = 'password authentication failed for user "{}"'


async def with_asyncpg(host, port, password):
    conn = await asyncpg.connect(host=host, port=port, user="postgres", password=password,
                                 database="postgres")
    assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
    await conn.close()
    for user, pw in (("postgres", password + "x"), ("postgres", ""), ("alice", password)):
        try:
            await asyncpg.connect(host=host, port=port, user=user, password=pw,
                                  database="postgres")
            raise AssertionError(f"{user} logged in with a wrong password")
        except asyncpg.InvalidPasswordError as e:
            assert e.sqlstate == "28P01", e
            assert str(e) == FAILED.format(user), e
    print("== asyncpg: right password in, wrong ones 28P01", flush=True)


def with_libpq(host, port, password):
    for connect, error in ((psycopg.connect, psycopg.OperationalError),
                           (psycopg2.connect, psycopg2.OperationalError)):
        conn = connect(host=host, port=port, user="postgres", password=password,
                       dbname="postgres")
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        conn.close()
        for user, pw in (("postgres", "wrong"), ("alice", password)):
            try:
                connect(host=host, port=port, user=user, password=pw, dbname="postgres")
                raise AssertionError(f"{user} logged in with a wrong password")
            except error as e:
                assert FAILED.format(user) in str(e), e
        print(f"== {connect.__module__.split('.')[0]}: right password in, wrong ones refused",
              flush=True)


if __name__ == "__main__":
    password, addr = sys.argv[1], sys.argv[2]
    host, port = addr.rsplit(":", 1)
    asyncio.run(with_asyncpg(host, int(port), password))
    with_libpq(host, int(port), password)
    print("== OK", flush=True)
