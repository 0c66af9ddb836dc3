// A second migration: a column added, a column renamed, a raw statement.
exports.up = async function (knex) {
  await knex.schema.alterTable('accounts', (t) => {
    t.text('note');
    t.renameColumn('tags', 'labels');
  });
  await knex.raw("COMMENT ON TABLE accounts IS 'one row per account'");
};

exports.down = async function (knex) {
  await knex.schema.alterTable('accounts', (t) => {
    t.renameColumn('labels', 'tags');
    t.dropColumn('note');
  });
};
