-- Fails on line 4 (division by zero): rolled back as a whole, reported with file, line and
-- SQLSTATE; the patch before it stays applied and the next run retries this one.
CREATE TABLE cost_share AS SELECT dog, cost FROM visits;
UPDATE cost_share SET cost = cost / (SELECT count(*) - 2 FROM visits);
