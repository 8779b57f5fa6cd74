-- An error during bootstrap: the baseline creates the database, then fails on line 8.
-- pgpatch reports file, line and SQLSTATE, then drops the half-made database and the role it
-- created, so the next run starts from nothing again.
CREATE ROLE kennel NOLOGIN;
CREATE DATABASE kennel OWNER kennel;
\connect kennel
CREATE TABLE breeds (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO breed (id, name) VALUES (1, 'Jämthund');
