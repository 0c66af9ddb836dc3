#!/usr/bin/env python3
"""TLS with psycopg 3 (libpq) and asyncpg.

Usage: tls_clients.py CA_FILE PASSWORD HOST:PORT

The server offers TLS with a certificate for localhost and 127.0.0.1 signed by CA_FILE, and
asks for the superuser's PASSWORD: psycopg with sslmode=verify-full and channel_binding=require
(SCRAM-SHA-256-PLUS, bound to the certificate) and asyncpg with a context that checks the
certificate (plain SCRAM-SHA-256 over TLS) get encrypted connections and run a query. Prints
"== OK" at the end; any failure raises.
"""
import asyncio
import ssl
import sys

import asyncpg
import psycopg


def main(ca, password, host, port):
    with psycopg.connect(host="localhost", hostaddr=host, port=port, user="postgres",
                         password=password, dbname="postgres", sslmode="verify-full",
                         sslrootcert=ca, channel_binding="require") as conn:
        assert conn.pgconn.ssl_in_use, "psycopg: not encrypted"
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    print("== psycopg 3: verify-full, encrypted, channel binding", flush=True)

    async def with_asyncpg():
        context = ssl.create_default_context(cafile=ca)
        conn = await asyncpg.connect(host=host, port=port, user="postgres", password=password,
                                     database="postgres", ssl=context)
        try:
            assert conn.get_server_pid() > 0
            assert await conn.fetchval("SELECT 40 + 2") == 42
            sslobj = conn._transport.get_extra_info("ssl_object")
            assert sslobj is not None and sslobj.version() == "TLSv1.3", sslobj
        finally:
            await conn.close()
    asyncio.run(with_asyncpg())
    print("== asyncpg: a verified certificate, TLSv1.3", flush=True)


if __name__ == "__main__":
    ca, password, addr = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = addr.rsplit(":", 1)
    main(ca, password, host, int(port))
    print("== OK", flush=True)
