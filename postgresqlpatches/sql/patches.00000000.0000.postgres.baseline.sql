-- pgpatch's state database, created in the original tool's shape; the later patches.* files
-- upgrade it, so a state database left by the original tool takes the same path.
-- Runs in psql as postgres on the maintenance database; :database is the state database's name.
\getenv patches_password PGPATCH_PATCHES_PASSWORD
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'patches') AS create_role \gset
\if :create_role
CREATE ROLE patches LOGIN PASSWORD :'patches_password';
\endif
CREATE DATABASE :"database" OWNER patches;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
\connect :"database"
SET ROLE patches;

CREATE TABLE databases (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE installed_patches (
    id serial PRIMARY KEY,
    major integer NOT NULL,
    minor integer NOT NULL,
    database_id integer NOT NULL REFERENCES databases (id),
    name text NOT NULL,
    installed timestamptz NOT NULL DEFAULT now(),
    UNIQUE (major, minor, database_id)
);

CREATE VIEW patches AS
SELECT d.name AS database, p.major, p.minor, p.name, p.installed
FROM installed_patches p JOIN databases d ON d.id = p.database_id;

CREATE PROCEDURE sp_patch_installed(p_database text, p_major integer, p_minor integer, p_name text)
LANGUAGE sql AS $$
    INSERT INTO databases (name) VALUES (p_database) ON CONFLICT (name) DO NOTHING;
    INSERT INTO installed_patches (major, minor, database_id, name)
    SELECT p_major, p_minor, id, p_name FROM databases WHERE name = p_database;
$$;

CREATE FUNCTION fn_patch_installed(p_database text, p_major integer, p_minor integer)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT FROM installed_patches p JOIN databases d ON d.id = p.database_id
        WHERE d.name = p_database AND p.major = p_major AND p.minor = p_minor);
$$;
