ALTER TABLE jobs ADD COLUMN owner varchar(40);
UPDATE jobs SET owner = 'nobody' WHERE owner IS NULL;
