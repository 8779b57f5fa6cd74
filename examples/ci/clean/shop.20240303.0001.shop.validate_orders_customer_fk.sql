-- In its own patch: VALIDATE takes only SHARE UPDATE EXCLUSIVE, so writes go on.
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;
