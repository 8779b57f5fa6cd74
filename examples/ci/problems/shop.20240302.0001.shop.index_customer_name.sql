-- Lint: a plain CREATE INDEX blocks every write to customers while it builds.
CREATE INDEX customers_name ON customers (name);
