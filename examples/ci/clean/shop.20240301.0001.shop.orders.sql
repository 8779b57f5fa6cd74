-- A new table may be indexed in the same file: nobody reads or writes it yet.
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    legacy_code text
);
CREATE INDEX orders_customer_id ON orders (customer_id);
