// A migration as knex users write them: tables with serial keys, defaults, a foreign key,
// a unique and a plain index, timestamps.
exports.up = async function (knex) {
  await knex.schema.createTable('owners', (t) => {
    t.increments('id');
    t.string('email', 120).notNullable().unique();
    t.timestamps(true, true);
  });
  await knex.schema.createTable('accounts', (t) => {
    t.bigIncrements('id');
    t.integer('owner_id').unsigned().notNullable().references('id').inTable('owners').onDelete('CASCADE');
    t.decimal('balance', 12, 2).notNullable().defaultTo(0);
    t.boolean('active').notNullable().defaultTo(true);
    t.jsonb('tags');
    t.index(['owner_id', 'active']);
  });
};

exports.down = async function (knex) {
  await knex.schema.dropTable('accounts');
  await knex.schema.dropTable('owners');
};
