-- The validated CHECK from two migrations ago proves it: no scan.
ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_display_name_nn;

-- No such proof for this one.
-- expect: set-not-null
ALTER TABLE accounts ALTER COLUMN notes SET NOT NULL;
