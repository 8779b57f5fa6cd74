-- CONCURRENTLY cannot run in a transaction: pgpatch runs this file statement by statement.
CREATE INDEX CONCURRENTLY orders_id_desc ON orders (id DESC);
