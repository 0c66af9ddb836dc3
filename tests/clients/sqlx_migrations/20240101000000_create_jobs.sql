-- A migration as sqlx users write them: several statements, run in one transaction.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    attempts integer NOT NULL DEFAULT 0,
    weight double precision,
    payload bytea,
    done boolean NOT NULL DEFAULT false
);
CREATE INDEX jobs_pending ON jobs (done, attempts);
