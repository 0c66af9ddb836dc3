CREATE TABLE items (id serial PRIMARY KEY, name varchar(40) NOT NULL UNIQUE, price numeric(10,2) DEFAULT 0, active boolean NOT NULL DEFAULT true);
CREATE TABLE orders (id bigserial PRIMARY KEY, item_id integer REFERENCES items (id), qty integer NOT NULL DEFAULT 1, placed_at timestamptz, UNIQUE (item_id, qty));
CREATE INDEX orders_placed ON orders (placed_at);
CREATE TABLE tags (tag text PRIMARY KEY, note text);
CREATE UNIQUE INDEX tags_lower_note ON tags (lower(note));
CREATE VIEW active_items AS SELECT id, name FROM items WHERE active;
CREATE SEQUENCE ticket_numbers;
