-- A database that bootstraps fine; its second later patch fails.
CREATE DATABASE vet;
\connect vet
CREATE TABLE visits (id integer PRIMARY KEY, dog text NOT NULL, cost numeric NOT NULL);
