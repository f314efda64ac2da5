CREATE SEQUENCE invoice_number_seq START WITH 1000 INCREMENT BY 1;

CREATE TABLE invoices (
    id bigint PRIMARY KEY,
    number bigint NOT NULL DEFAULT nextval('invoice_number_seq'),
    account_id bigint NOT NULL,
    total money_amount,
    issued_on date NOT NULL DEFAULT CURRENT_DATE
);

CREATE SEQUENCE invoices_id_seq;
ALTER SEQUENCE invoices_id_seq OWNED BY invoices.id;
ALTER TABLE invoices ALTER COLUMN id SET DEFAULT nextval('invoices_id_seq');
ALTER SEQUENCE invoice_number_seq OWNED BY invoices.number;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lint_corpus_reporting') THEN
        CREATE ROLE lint_corpus_reporting NOLOGIN;
    END IF;
END
$$;

GRANT SELECT ON invoices TO lint_corpus_reporting;
GRANT USAGE, SELECT ON SEQUENCE invoice_number_seq TO lint_corpus_reporting;
