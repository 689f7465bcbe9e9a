#!/usr/bin/env node
// Sequelize 6 over node-postgres against Shoal's PostgreSQL endpoint, as an application uses
// it: sync({ force: true }) (DROP … CASCADE, CREATE with SERIAL and UNIQUE, index reflection),
// associations, create/bulkCreate, iLike, include (a join), group by with sum, a committed and a
// rolled-back managed transaction, a unique violation as SequelizeUniqueConstraintError, and
// describeTable.
//
// Usage: node sequelize_session.js WRITE_PORT [READ_PORT ...]
// (prints "sequelize session: ok" on success; writes go to the first port, reads are checked
// on every port given, waiting up to 10 s for a node that lags)
'use strict';

const assert = require('node:assert/strict');
const { Sequelize, DataTypes, Op } = require('sequelize');

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p))) {
  console.error('usage: node sequelize_session.js WRITE_PORT [READ_PORT ...]');
  process.exit(2);
}

function connect(port) {
  const sequelize = new Sequelize(`postgres://shoal@127.0.0.1:${port}/shoal`, { logging: false });
  const Author = sequelize.define('Author', {
    name: { type: DataTypes.STRING(100), unique: true, allowNull: false },
    born: DataTypes.DATEONLY,
  });
  const Book = sequelize.define('Book', {
    title: { type: DataTypes.STRING, allowNull: false },
    price: DataTypes.DECIMAL(8, 2),
    inPrint: { type: DataTypes.BOOLEAN, defaultValue: true },
    meta: DataTypes.JSONB,
    ref: { type: DataTypes.UUID, defaultValue: DataTypes.UUIDV4 },
  });
  Author.hasMany(Book);
  Book.belongsTo(Author);
  return { sequelize, Author, Book };
}

async function write({ sequelize, Author, Book }) {
  await sequelize.sync({ force: true });
  const ada = await Author.create({ name: 'Ada', born: '1815-12-10' });
  assert.equal(typeof ada.id, 'number');
  await Book.bulkCreate([
    { title: 'Notes', price: '12.50', AuthorId: ada.id, meta: { pages: 40 } },
    { title: 'Letters', price: '7.25', AuthorId: ada.id, inPrint: false },
  ]);
  await sequelize.transaction(async (transaction) => {
    const grace = await Author.create({ name: 'Grace' }, { transaction });
    await Book.create({ title: 'Compilers', price: '30.00', AuthorId: grace.id }, { transaction });
  });
  await assert.rejects(sequelize.transaction(async (transaction) => {
    await Author.create({ name: 'Never' }, { transaction });
    throw new Error('roll it back');
  }), /roll it back/);
  await assert.rejects(Author.create({ name: 'Ada' }), (error) => {
    assert.equal(error.name, 'SequelizeUniqueConstraintError');
    assert.equal(error.parent.code, '23505');
    return true;
  });
  const described = await sequelize.getQueryInterface().describeTable('Books');
  assert.equal(described.id.primaryKey, true);
  assert.equal(described.title.allowNull, false);
  assert.equal(described.title.type, 'CHARACTER VARYING(255)');
  assert.equal(described.meta.type, 'JSONB');
  assert.equal(described.createdAt.type, 'TIMESTAMP WITH TIME ZONE');
}

async function read({ Author, Book }) {
  const books = await Book.findAll({
    where: { title: { [Op.iLike]: 'n%' } },
    include: Author,
  });
  assert.equal(books.length, 1);
  assert.equal(books[0].Author.name, 'Ada');
  assert.equal(books[0].price, '12.50');
  assert.deepEqual(books[0].meta, { pages: 40 });
  assert.match(books[0].ref, /^[0-9a-f-]{36}$/);
  assert.ok(books[0].createdAt instanceof Date);
  assert.equal(await Book.count(), 3);
  assert.equal(await Author.count({ where: { name: 'Never' } }), 0);
  const letters = await Book.findOne({ where: { title: 'Letters' } });
  assert.equal(letters.inPrint, false);
  const grace = await Author.findOne({ where: { name: 'Grace' }, include: Book });
  assert.deepEqual(grace.Books.map((b) => b.title), ['Compilers']);
}

async function eventually(port) {
  const deadline = Date.now() + 10000;
  const db = connect(port);
  try {
    for (;;) {
      try {
        return await read(db);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`port ${port}: ${error.stack || error}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    await db.sequelize.close();
  }
}

async function main() {
  const db = connect(ports[0]);
  try {
    await write(db);
  } finally {
    await db.sequelize.close();
  }
  for (const port of ports) {
    await eventually(port);
  }
  console.log('sequelize session: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
