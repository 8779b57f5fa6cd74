-- Baseline of the hundbidrag database (a dog-allowance register): creates its role and the
-- database, then the tables. It runs through psql as postgres on the maintenance database,
-- only when the database does not exist yet. The role's password comes from the environment
-- (POSTGRESQL_HUNDBIDRAG_PASSWORD, handed to psql as PGPATCH_HUNDBIDRAG_PASSWORD); it is
-- never written into this file.
\getenv hundbidrag_password PGPATCH_HUNDBIDRAG_PASSWORD
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hundbidrag') AS create_role \gset
\if :create_role
CREATE ROLE hundbidrag LOGIN PASSWORD :'hundbidrag_password';
\endif

CREATE DATABASE hundbidrag OWNER hundbidrag;
\connect hundbidrag
SET ROLE hundbidrag;

CREATE TABLE owners (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    municipality text NOT NULL
);

CREATE TABLE dogs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint NOT NULL REFERENCES owners (id),
    name text NOT NULL,
    born date NOT NULL
);

CREATE TABLE allowances (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dog_id bigint NOT NULL REFERENCES dogs (id),
    year integer NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    amount numeric(10, 2) NOT NULL CHECK (amount >= 0),
    UNIQUE (dog_id, year)
);
