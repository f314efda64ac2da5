-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY invoices_number_key_idx ON invoices (number);
