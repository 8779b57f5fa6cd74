-- Repeatable patches (major 99999999) run again whenever their checksum changes. Each run gets
-- a record of its own, numbered by run, written before the patch commits (with its transaction
-- id) like any other record, so a run that dies is settled the same way and no run is done
-- twice or lost. A versioned patch keeps exactly one record (run is NULL): the unique key on
-- (major, minor, database_id) becomes one on (major, minor, database_id, run or 0).
ALTER TABLE installed_patches ADD COLUMN run integer;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT con.conname FROM pg_constraint con
        WHERE con.conrelid = 'installed_patches'::regclass AND con.contype = 'u'
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
               WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey))
              = ARRAY['database_id', 'major', 'minor']
    LOOP
        EXECUTE format('ALTER TABLE installed_patches DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;

CREATE UNIQUE INDEX installed_patches_once
    ON installed_patches (major, minor, database_id, coalesce(run, 0));
