#!/usr/bin/env node
// node-postgres (`pg`) and knex migrations against a server.
//
// Usage: node node_clients.js HOST:PORT   (with NODE_PATH naming the installed packages)
//
// node-postgres: parameterized queries (unnamed prepared statements, values sent as text),
// named prepared statements reused across calls, transactions committed and rolled back, an
// error's SQLSTATE and the connection still usable after it. knex: `migrate.latest()` runs two
// migrations (its own bookkeeping tables and lock included), `migrate.rollback()` undoes the
// last, `migrate.latest()` again, then the query builder writes and reads through them.
// Expects a fresh server. Prints "== OK" at the end; any failure throws. The test runs it
// against PostgreSQL 15 first, so its expectations are PostgreSQL's.
'use strict';
const assert = require('assert/strict');
const path = require('path');
const { Client } = require('pg');
const knexFactory = require('knex');

const [host, port] = process.argv[2].split(':');
const connection = { host, port: Number(port), user: 'postgres', database: 'postgres' };

async function nodePostgres() {
  const c = new Client(connection);
  await c.connect();
  await c.query('CREATE TABLE pg_items (id serial PRIMARY KEY, name text NOT NULL UNIQUE, qty int, price numeric(8,2), seen timestamptz)');

  // Parameterized: node-postgres sends every value as text in an unnamed Parse/Bind.
  const ins = await c.query(
    'INSERT INTO pg_items (name, qty, price, seen) VALUES ($1, $2, $3, $4) RETURNING id, name, qty, price',
    ['bolt', 7, '1.50', new Date('2024-03-01T12:00:00Z')],
  );
  assert.equal(ins.rowCount, 1);
  assert.deepEqual(ins.rows[0], { id: 1, name: 'bolt', qty: 7, price: '1.50' });
  assert.deepEqual(ins.fields.map((f) => f.dataTypeID), [23, 25, 23, 1700]);

  // Named prepared statement, parsed once and executed many times.
  const insert = { name: 'insert-item', text: 'INSERT INTO pg_items (name, qty, price) VALUES ($1, $2, $3)' };
  for (let i = 0; i < 20; i++) {
    const r = await c.query({ ...insert, values: [`nut-${i}`, i, `${i}.25`] });
    assert.equal(r.rowCount, 1);
    assert.equal(r.command, 'INSERT');
  }
  const byQty = { name: 'by-qty', text: 'SELECT name, qty FROM pg_items WHERE qty >= $1 ORDER BY qty, name' };
  assert.equal((await c.query({ ...byQty, values: [15] })).rows.length, 5);
  assert.deepEqual((await c.query({ ...byQty, values: [19] })).rows, [{ name: 'nut-19', qty: 19 }]);

  const agg = await c.query('SELECT count(*) AS n, sum(qty) AS total, max(price) AS top, min(seen) AS first FROM pg_items');
  assert.deepEqual(agg.rows[0], { n: '21', total: '197', top: '19.25', first: new Date('2024-03-01T12:00:00Z') });

  // Transactions: a committed one and a rolled-back one.
  await c.query('BEGIN');
  await c.query('UPDATE pg_items SET qty = qty + $1 WHERE name = $2', [100, 'bolt']);
  await c.query('COMMIT');
  await c.query('BEGIN');
  await c.query('DELETE FROM pg_items');
  assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_items')).rows[0].n, 0);
  await c.query('ROLLBACK');
  assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_items')).rows[0].n, 21);
  assert.equal((await c.query("SELECT qty FROM pg_items WHERE name = 'bolt'")).rows[0].qty, 107);

  // An error inside a transaction: its SQLSTATE, 25P02 after it, the connection usable after ROLLBACK.
  await c.query('BEGIN');
  await assert.rejects(c.query('INSERT INTO pg_items (name) VALUES ($1)', ['bolt']), { code: '23505' });
  await assert.rejects(c.query('SELECT 1'), { code: '25P02' });
  await c.query('ROLLBACK');
  await assert.rejects(c.query('SELECT * FROM no_such_table'), { code: '42P01' });
  assert.equal((await c.query('SELECT $1::int + 1 AS v', [41])).rows[0].v, 42);
  await c.end();
}

async function knexMigrations() {
  const knex = knexFactory({
    client: 'pg',
    connection,
    pool: { min: 0, max: 2 },
    migrations: { directory: path.join(__dirname, 'knex_migrations') },
  });
  try {
    const [batch, done] = await knex.migrate.latest();
    assert.equal(batch, 1);
    assert.equal(done.length, 2);
    assert.equal(await knex.migrate.currentVersion(), '20240102000000');
    assert.deepEqual(await knex.migrate.list().then(([completed, pending]) => [completed.length, pending.length]), [2, 0]);

    const [, undone] = await knex.migrate.rollback();
    assert.equal(undone.length, 2); // one batch held both migrations
    assert.equal(await knex.schema.hasTable('accounts'), false);
    await knex.migrate.up(); // the first one alone
    assert.equal(await knex.schema.hasColumn('accounts', 'tags'), true);
    assert.equal(await knex.schema.hasColumn('accounts', 'note'), false);
    await knex.migrate.latest();
    assert.equal(await knex.schema.hasColumn('accounts', 'labels'), true);
    assert.equal(await knex.schema.hasColumn('accounts', 'note'), true);
    const batches = await knex('knex_migrations').select('name', 'batch').orderBy('id');
    assert.deepEqual(batches.map((r) => [r.name, r.batch]), [
      ['20240101000000_create_accounts.js', 1],
      ['20240102000000_add_note.js', 2],
    ]);

    // A workload through the query builder.
    const [owner] = await knex('owners').insert({ email: 'ada@example.com' }).returning(['id', 'created_at']);
    assert.equal(owner.id, 1);
    assert.ok(owner.created_at instanceof Date);
    await knex.transaction(async (trx) => {
      await trx('accounts').insert([
        { owner_id: owner.id, balance: '10.00', labels: JSON.stringify(['a']) },
        { owner_id: owner.id, balance: '32.50', active: false, note: 'closed' },
      ]);
      await trx('accounts').where({ active: true }).increment('balance', 5);
    });
    await assert.rejects(knex('accounts').insert({ owner_id: 99 }), { code: '23503' });
    const rows = await knex('accounts').select('id', 'balance', 'active', 'labels', 'note').orderBy('id');
    assert.deepEqual(rows, [
      { id: '1', balance: '15.00', active: true, labels: ['a'], note: null },
      { id: '2', balance: '32.50', active: false, labels: null, note: 'closed' },
    ]);
    const sum = await knex('accounts').sum({ total: 'balance' }).first();
    assert.equal(sum.total, '47.50');
    await knex('owners').where({ id: owner.id }).del();
    assert.equal((await knex('accounts').count({ n: '*' }).first()).n, '0');
  } finally {
    await knex.destroy();
  }
}

(async () => {
  await nodePostgres();
  await knexMigrations();
  console.log('== OK');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
