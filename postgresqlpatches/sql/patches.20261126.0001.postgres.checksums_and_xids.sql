-- Upgrade the state database (ours or the original tool's) in place, keeping every record:
-- versions as text, who ran it, checksums, and the target transaction id that makes a crash
-- between the two commits recoverable. Runs as postgres: the original tables may have any owner.
DROP VIEW IF EXISTS patches;
DROP ROUTINE IF EXISTS sp_patch_installed;
DROP ROUTINE IF EXISTS fn_patch_installed;

ALTER TABLE installed_patches
    ALTER COLUMN major TYPE text USING lpad(major::text, 8, '0'),
    ALTER COLUMN minor TYPE text USING lpad(minor::text, 4, '0'),
    ALTER COLUMN name TYPE text,
    ADD COLUMN user_name text,
    ADD COLUMN description text,
    ADD COLUMN path text,
    ADD COLUMN checksum text,
    ADD COLUMN xid xid8,
    ADD COLUMN settled boolean NOT NULL DEFAULT true,
    ADD COLUMN non_transactional boolean NOT NULL DEFAULT false,
    ADD COLUMN statements_done integer,
    ADD COLUMN duration_ms double precision,
    ADD COLUMN run_by text,
    ADD COLUMN pgpatch_version text;

ALTER TABLE installed_patches ALTER COLUMN installed SET DEFAULT now();

CREATE INDEX installed_patches_unsettled ON installed_patches (id) WHERE NOT settled;

CREATE VIEW patches AS
SELECT d.name AS database, p.major, p.minor, p.user_name, p.description, p.installed,
       p.duration_ms, p.checksum, p.settled, p.path, p.run_by
FROM installed_patches p JOIN databases d ON d.id = p.database_id;

DO $$
DECLARE
    obj record;
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'patches') THEN
        EXECUTE format('ALTER DATABASE %I OWNER TO patches', current_database());
        FOR obj IN
            SELECT c.oid::regclass AS name FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')
        LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO patches', obj.name);
        END LOOP;
    END IF;
END
$$;

-- who and what, from the file names the original tool kept
UPDATE installed_patches
SET user_name = split_part(name, '.', 4), description = split_part(name, '.', 5)
WHERE user_name IS NULL
  AND name ~ '^[a-z_][a-z0-9_]*\.[0-9]{8}\.[0-9]{4}\.[a-z_][a-z0-9_]*\.[A-Za-z0-9_-]+\.sql$';
