#!/usr/bin/env node
// TypeORM 0.3 over node-postgres against Shoal's PostgreSQL endpoint, as an application uses
// it: a DataSource with synchronize and dropSchema (TypeORM reads the whole schema through
// information_schema and pg_catalog, drops what is there, creates tables with SERIAL, uuid
// defaults, named PRIMARY KEY / UNIQUE constraints, an index and a foreign key), repositories
// (save, findOne with relations, update with @VersionColumn and @UpdateDateColumn), the query
// builder (group by with COUNT, ILIKE, pagination, = ANY of an array), a multi-row insert of
// objects with different keys, a rolled-back transaction, a unique
// violation by SQLSTATE, ON DELETE CASCADE, a column added by the query runner, and a second
// DataSource whose schema diff against the tables TypeORM made is empty.
//
// Usage: node typeorm_session.js WRITE_PORT [READ_PORT ...]
// (prints "typeorm session: ok" on success; writes go to the first port, reads are checked on
// every port given, waiting up to 10 s for a node that lags)
'use strict';

const assert = require('node:assert/strict');
const { DataSource, EntitySchema, TableColumn } = require('typeorm');

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p))) {
  console.error('usage: node typeorm_session.js WRITE_PORT [READ_PORT ...]');
  process.exit(2);
}

const User = new EntitySchema({
  name: 'User',
  tableName: 'users',
  columns: {
    id: { type: Number, primary: true, generated: true },
    name: { type: 'varchar', length: 100, unique: true },
    email: { type: 'varchar', nullable: true },
    isActive: { type: 'boolean', default: true },
    balance: { type: 'decimal', precision: 10, scale: 2, default: 0 },
    profile: { type: 'jsonb', nullable: true },
    tags: { type: 'simple-array', nullable: true },
    createdAt: { type: 'timestamp', createDate: true },
    updatedAt: { type: 'timestamptz', updateDate: true },
    version: { type: Number, version: true },
  },
  relations: { posts: { type: 'one-to-many', target: 'Post', inverseSide: 'author' } },
});

const Post = new EntitySchema({
  name: 'Post',
  tableName: 'posts',
  columns: {
    id: { type: 'uuid', primary: true, generated: 'uuid' },
    title: { type: 'text' },
    score: { type: 'float', default: 0 },
    publishedOn: { type: 'date', nullable: true },
  },
  indices: [{ name: 'idx_post_title', columns: ['title'] }],
  relations: {
    author: {
      type: 'many-to-one',
      target: 'User',
      inverseSide: 'posts',
      onDelete: 'CASCADE',
      joinColumn: { name: 'author_id' },
    },
  },
});

function dataSource(port, options = {}) {
  return new DataSource({
    type: 'postgres',
    host: '127.0.0.1',
    port,
    username: 'shoal',
    password: '',
    database: 'shoal',
    entities: [User, Post],
    logging: false,
    ...options,
  });
}

async function write(port) {
  const ds = await dataSource(port, { synchronize: true, dropSchema: true }).initialize();
  try {
    const users = ds.getRepository('User');
    const posts = ds.getRepository('Post');
    const ada = await users.save({
      name: 'ada', email: 'ada@example.com', balance: '10.50', profile: { age: 36 }, tags: ['x', 'y'],
    });
    assert.equal(ada.id, 1);
    assert.equal(ada.version, 1);
    assert.equal(ada.isActive, true);
    assert.ok(ada.createdAt instanceof Date);
    const bob = await users.save({ name: 'bob' });
    assert.equal(bob.balance, '0.00');
    const hello = await posts.save({ title: 'hello', author: ada, score: 1.5, publishedOn: '2024-01-02' });
    assert.match(hello.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await posts.save({ title: 'world', author: ada });
    await posts.save({ title: 'bobs', author: bob });

    const before = ada.updatedAt.getTime();
    await new Promise((resolve) => setTimeout(resolve, 20));
    ada.email = 'ada@new.example.com';
    await users.save(ada);
    const updated = await users.findOneBy({ id: ada.id });
    assert.equal(updated.email, 'ada@new.example.com');
    assert.equal(updated.version, 2);
    // CURRENT_TIMESTAMP keeps PostgreSQL's sub-second precision.
    assert.ok(updated.updatedAt.getTime() > before, `${updated.updatedAt} after ${before}`);

    const counts = await posts.createQueryBuilder('p')
      .select('p.author_id', 'author').addSelect('COUNT(*)', 'n')
      .groupBy('p.author_id').orderBy('n', 'DESC').getRawMany();
    // COUNT(*) is a bigint, which node-postgres hands over as a string.
    assert.deepEqual(counts, [{ author: 1, n: '2' }, { author: 2, n: '1' }]);

    await assert.rejects(users.insert({ name: 'ada' }), (error) => {
      assert.equal(error.code, '23505');
      return true;
    });
    await assert.rejects(ds.transaction(async (manager) => {
      await manager.getRepository('User').save({ name: 'carol' });
      throw new Error('roll it back');
    }), /roll it back/);
    assert.equal(await users.countBy({ name: 'carol' }), 0);

    // A batch of objects with different keys: TypeORM writes DEFAULT where a key is missing.
    const batch = await users.insert([{ name: 'pat' }, { name: 'quinn', email: 'q@example.com' }]);
    assert.equal(batch.identifiers.length, 2);
    const quinn = await users.findOneBy({ name: 'quinn' });
    assert.equal(quinn.email, 'q@example.com');
    assert.equal((await users.findOneBy({ name: 'pat' })).isActive, true);
    // An array bound to = ANY($1).
    const some = await users.createQueryBuilder('u')
      .where('u.id = ANY(:ids)', { ids: [ada.id, quinn.id] }).orderBy('u.id').getMany();
    assert.deepEqual(some.map((u) => u.name), ['ada', 'quinn']);

    const runner = ds.createQueryRunner();
    try {
      await runner.addColumn('users', new TableColumn({ name: 'nick', type: 'varchar', isNullable: true }));
      const table = await runner.getTable('users');
      const nick = table.findColumnByName('nick');
      assert.equal(nick.type, 'character varying');
      assert.equal(nick.isNullable, true);
      assert.equal(table.findColumnByName('balance').precision, 10);
      assert.equal(table.findColumnByName('balance').scale, 2);
      assert.deepEqual(table.primaryColumns.map((c) => c.name), ['id']);
      assert.deepEqual(table.uniques.map((u) => u.columnNames), [['name']]);
      const postsTable = await runner.getTable('posts');
      assert.equal(postsTable.foreignKeys.length, 1);
      assert.equal(postsTable.foreignKeys[0].onDelete, 'CASCADE');
      assert.deepEqual(postsTable.indices.map((i) => i.name), ['idx_post_title']);
      await runner.dropColumn('users', 'nick');
    } finally {
      await runner.release();
    }
  } finally {
    await ds.destroy();
  }

  // The schema TypeORM made reads back as TypeORM wrote it: nothing to synchronize.
  const again = await dataSource(port).initialize();
  try {
    const pending = await again.driver.createSchemaBuilder().log();
    assert.deepEqual(pending.upQueries.map((q) => q.query), []);
  } finally {
    await again.destroy();
  }
}

async function read(port, { deleted }) {
  const ds = await dataSource(port).initialize();
  try {
    const users = ds.getRepository('User');
    const posts = ds.getRepository('Post');
    if (deleted) {
      assert.equal(await users.countBy({ name: 'ada' }), 0);
      assert.deepEqual((await posts.find()).map((p) => p.title), ['bobs']);
      return;
    }
    const ada = await users.findOne({ where: { name: 'ada' }, relations: { posts: true } });
    assert.equal(ada.balance, '10.50');
    assert.deepEqual(ada.profile, { age: 36 });
    assert.deepEqual(ada.tags, ['x', 'y']);
    assert.deepEqual(ada.posts.map((p) => p.title).sort(), ['hello', 'world']);
    const hello = ada.posts.find((p) => p.title === 'hello');
    assert.equal(hello.score, 1.5);
    assert.equal(hello.publishedOn, '2024-01-02');
    const page = await posts.find({ order: { title: 'ASC' }, skip: 1, take: 1 });
    assert.deepEqual(page.map((p) => p.title), ['hello']);
    const found = await users.createQueryBuilder('u').where('u.name ILIKE :n', { n: 'A%' }).getMany();
    assert.deepEqual(found.map((u) => u.name), ['ada']);
  } finally {
    await ds.destroy();
  }
}

async function eventually(port, state) {
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      return await read(port, state);
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`port ${port}: ${error.stack || error}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function main() {
  await write(ports[0]);
  for (const port of ports) {
    await eventually(port, { deleted: false });
  }
  // ON DELETE CASCADE removes the user's posts.
  const ds = await dataSource(ports[0]).initialize();
  try {
    await ds.getRepository('User').delete({ name: 'ada' });
  } finally {
    await ds.destroy();
  }
  for (const port of ports) {
    await eventually(port, { deleted: true });
  }
  console.log('typeorm session: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
