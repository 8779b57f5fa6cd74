SET lock_timeout = '2s';
-- pgpatch: allow drop-column  (no deployed code reads it since release 4.2)
ALTER TABLE orders DROP COLUMN legacy_code;
