-- A later patch: runs once on every server, as hundbidrag, in one transaction.
CREATE VIEW allowance_per_owner AS
SELECT o.name AS owner, a.year, sum(a.amount) AS total
FROM allowances a
JOIN dogs d ON d.id = a.dog_id
JOIN owners o ON o.id = d.owner_id
GROUP BY o.name, a.year;
