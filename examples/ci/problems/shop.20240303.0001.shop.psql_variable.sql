-- Problem: psql meta-commands only work in a 0000 baseline.
\set ON_ERROR_STOP on
INSERT INTO customers (name) VALUES ('Astrid');
