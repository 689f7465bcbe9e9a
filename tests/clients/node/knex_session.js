#!/usr/bin/env node
// Knex over node-postgres (`pg`) against Shoal's PostgreSQL endpoint, as an application uses
// them: Knex's migrator runs two migrations (increments, timestamps, json, boolean, decimal, a
// unique column, an index, a foreign key with ON DELETE CASCADE; then an added column with its
// index and a column changed with .alter()), CRUD with `returning`, joins, ILIKE, pagination,
// a transaction that rolls back, unique and foreign-key violations caught by their SQLSTATE,
// and the migrations rolled back again.
//
// Usage: node knex_session.js WRITE_PORT [READ_PORT ...]
// (prints "knex session: ok" on success; writes go to the first port, reads are checked on
// every port given, waiting up to 10 s for a node that lags)
'use strict';

const assert = require('node:assert/strict');
const knexFactory = require('knex');

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p))) {
  console.error('usage: node knex_session.js WRITE_PORT [READ_PORT ...]');
  process.exit(2);
}

function connect(port) {
  return knexFactory({
    client: 'pg',
    connection: { host: '127.0.0.1', port, user: 'shoal', database: 'shoal' },
    pool: { min: 0, max: 2 },
    acquireConnectionTimeout: 10000,
  });
}

const migrations = {
  '20260101000000_authors_and_books': {
    async up(knex) {
      await knex.schema.createTable('knex_authors', (t) => {
        t.increments('id');
        t.string('name', 100).notNullable().unique();
        t.timestamps(true, true);
      });
      await knex.schema.createTable('knex_books', (t) => {
        t.increments('id');
        t.integer('author_id').unsigned().notNullable()
          .references('id').inTable('knex_authors').onDelete('CASCADE');
        t.string('title', 100).notNullable();
        t.decimal('price', 8, 2);
        t.boolean('in_print').notNullable().defaultTo(true);
        t.json('meta');
        t.timestamps(true, true);
        t.index(['title']);
      });
    },
    async down(knex) {
      await knex.schema.dropTable('knex_books');
      await knex.schema.dropTable('knex_authors');
    },
  },
  '20260102000000_isbn_and_longer_titles': {
    async up(knex) {
      await knex.schema.alterTable('knex_books', (t) => {
        t.string('isbn', 13).nullable();
        t.index(['isbn'], 'knex_books_isbn_index');
      });
      await knex.schema.alterTable('knex_books', (t) => {
        t.string('title', 200).notNullable().alter();
      });
    },
    async down(knex) {
      await knex.schema.alterTable('knex_books', (t) => {
        t.dropIndex(['isbn'], 'knex_books_isbn_index');
        t.dropColumn('isbn');
      });
    },
  },
};

const migrationSource = {
  getMigrations: async () => Object.keys(migrations),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name],
};

async function eventually(port, check) {
  const deadline = Date.now() + 10000;
  const db = connect(port);
  try {
    for (;;) {
      try {
        return await check(db);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`port ${port}: ${error.stack || error}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    await db.destroy();
  }
}

async function expectViolation(sqlstate, promise) {
  try {
    await promise;
  } catch (error) {
    assert.equal(error.code, sqlstate, `expected SQLSTATE ${sqlstate}, got ${error.code}: ${error.message}`);
    return;
  }
  assert.fail(`expected SQLSTATE ${sqlstate}; the statement succeeded`);
}

async function migrate(db) {
  const [batch, applied] = await db.migrate.latest({ migrationSource });
  assert.equal(batch, 1);
  assert.deepEqual(applied, Object.keys(migrations));
  const columns = await db('knex_books').columnInfo();
  assert.equal(columns.price.type, 'numeric');
  assert.equal(columns.in_print.type, 'boolean');
  assert.equal(columns.meta.type, 'json');
  assert.equal(columns.created_at.type, 'timestamp with time zone');
  assert.equal(columns.isbn.maxLength, 13);
  assert.equal(columns.title.maxLength, 200, 'title was altered to varchar(200)');
  assert.equal(columns.title.nullable, false);
  const [again] = await db.migrate.latest({ migrationSource });
  assert.equal(again, 1, 'nothing left to migrate');
}

async function crud(db) {
  const [ada] = await db('knex_authors').insert({ name: 'Ada' }).returning(['id', 'name', 'created_at']);
  assert.equal(typeof ada.id, 'number', 'an increments() id is an integer, read as a number');
  assert.equal(ada.name, 'Ada');
  assert.ok(ada.created_at instanceof Date && Math.abs(Date.now() - ada.created_at) < 60000,
    `created_at defaults to now: ${ada.created_at}`);
  const [{ id: grace }] = await db('knex_authors').insert({ name: 'Grace' }).returning('id');
  const books = await db('knex_books').insert([
    { author_id: ada.id, title: 'Notes on the Engine', price: '12.50', in_print: true, meta: { pages: 40 }, isbn: '9780000000001' },
    { author_id: ada.id, title: 'Letters', price: '7.25', in_print: false, meta: { pages: 120 }, isbn: null },
    { author_id: grace, title: 'Compilers', price: '30.00', in_print: true, meta: { tags: ['cobol'] }, isbn: null },
  ]).returning(['id', 'title', 'price', 'in_print', 'meta']);
  assert.equal(books.length, 3);
  assert.deepEqual(books.map((b) => b.price), ['12.50', '7.25', '30.00']);
  assert.deepEqual(books.map((b) => b.in_print), [true, false, true]);
  assert.deepEqual(books[0].meta, { pages: 40 });

  const [updated] = await db('knex_books').where({ id: books[1].id })
    .update({ price: '8.00', in_print: true }).returning(['price', 'in_print']);
  assert.deepEqual(updated, { price: '8.00', in_print: true });

  await expectViolation('23505', db('knex_authors').insert({ name: 'Ada' }));
  await expectViolation('23503', db('knex_books').insert({ author_id: 999999, title: 'Orphan' }));
  await expectViolation('23502', db('knex_books').insert({ author_id: ada.id }));

  await assert.rejects(db.transaction(async (trx) => {
    await trx('knex_authors').insert({ name: 'Rolled back' });
    await trx('knex_books').insert({ author_id: grace, title: 'Never' });
    throw new Error('roll it back');
  }), /roll it back/);
  await db.transaction(async (trx) => {
    const [{ id }] = await trx('knex_authors').insert({ name: 'Committed' }).returning('id');
    await trx('knex_books').insert({ author_id: id, title: 'Kept', price: '1.00' });
  });
  return { ada: ada.id, grace };
}

async function reads(db, ids) {
  const rows = await db('knex_books as b')
    .join('knex_authors as a', 'a.id', 'b.author_id')
    .select('a.name', 'b.title', 'b.price', 'b.in_print')
    .where('a.name', 'ilike', 'a%')
    .orderBy('b.title');
  assert.deepEqual(rows, [
    { name: 'Ada', title: 'Letters', price: '8.00', in_print: true },
    { name: 'Ada', title: 'Notes on the Engine', price: '12.50', in_print: true },
  ]);
  const totals = await db('knex_books').select('author_id')
    .count('* as books').sum('price as total').groupBy('author_id').orderBy('author_id');
  assert.equal(totals.length, 3);
  assert.equal(Number(totals[0].books), 2);
  assert.equal(Number(totals[0].total), 20.5);
  const page = await db('knex_authors').select('name').orderBy('name').limit(2).offset(1);
  assert.deepEqual(page.map((r) => r.name), ['Committed', 'Grace']);
  const absent = await db('knex_authors').where('name', 'Rolled back').first();
  assert.equal(absent, undefined, 'the rolled-back transaction left nothing');
  const [{ count }] = await db('knex_books').where('title', 'Never').count();
  assert.equal(Number(count), 0);
  const found = await db('knex_books').where('isbn', '9780000000001').first('title');
  assert.equal(found.title, 'Notes on the Engine');
  const grace = await db('knex_authors').where({ id: ids.grace }).first();
  assert.equal(grace.name, 'Grace');
}

async function cascadeAndRollback(db) {
  await db('knex_authors').where({ name: 'Grace' }).del();
  const [{ count }] = await db('knex_books').where('title', 'Compilers').count();
  assert.equal(Number(count), 0, 'ON DELETE CASCADE removed her book');
  await db.migrate.rollback({ migrationSource }, true);
  assert.equal(await db.schema.hasTable('knex_books'), false);
  assert.equal(await db.schema.hasTable('knex_authors'), false);
  assert.equal(await db.schema.hasTable('knex_migrations'), true);
}

async function main() {
  const db = connect(ports[0]);
  try {
    await migrate(db);
    const ids = await crud(db);
    for (const port of ports) {
      await eventually(port, (reader) => reads(reader, ids));
    }
    await cascadeAndRollback(db);
  } finally {
    await db.destroy();
  }
  console.log('knex session: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
