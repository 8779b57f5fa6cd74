-- Baseline of the shop database: its role, the database and the first table. Runs through
-- psql as postgres, only on a server where shop does not exist. The role's password comes
-- from POSTGRESQL_SHOP_PASSWORD (psql sees it as PGPATCH_SHOP_PASSWORD).
\getenv shop_password PGPATCH_SHOP_PASSWORD
CREATE ROLE shop LOGIN PASSWORD :'shop_password';
CREATE DATABASE shop OWNER shop;
\connect shop
SET ROLE shop;
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
