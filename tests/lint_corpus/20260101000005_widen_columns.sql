-- Binary-coercible changes: PostgreSQL rewrites neither the table nor its indexes.
ALTER TABLE accounts ALTER COLUMN name TYPE text;
ALTER TABLE accounts ALTER COLUMN slug TYPE varchar(255);
ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14, 2);
ALTER TABLE users ALTER COLUMN display_name TYPE varchar;
ALTER TABLE users ALTER COLUMN ip_range SET DATA TYPE inet;
ALTER TABLE users ALTER COLUMN profile TYPE text;
