-- The marks a bootstrap leaves before each of its steps runs, so that the next run can prove
-- that a database it finds is the one that bootstrap made and that nobody else used it since
-- (docs/safety.md, "Bootstrap"): the largest database oid on the server when the step began,
-- and how many sessions the step may open to its database.
ALTER TABLE installed_patches
    ADD COLUMN oid_horizon bigint,
    ADD COLUMN session_budget integer;
