-- Checksums of what the server executes: PostgreSQL's tokens (checksum version 2), so that a
-- comment, pgpatch's own directives, whitespace or line endings are not a change. Rows without
-- a version keep the version 1 checksum (sha256 of the text) until apply upgrades them.
-- text_checksum: the version 1 checksum of the file as last seen, so an unchanged file is
-- recognised without scanning it. statement_checksums: for a non-transactional patch, the
-- version 2 checksum of each statement done, so that a resumed run can tell an edited done part.
ALTER TABLE installed_patches
    ADD COLUMN checksum_version integer,
    ADD COLUMN text_checksum text,
    ADD COLUMN statement_checksums text[];
