-- Problem: pgpatch runs each patch in its own transaction; a COMMIT in the middle breaks that.
INSERT INTO customers (name) VALUES ('Selma');
COMMIT;
INSERT INTO customers (name) VALUES ('Karo');
