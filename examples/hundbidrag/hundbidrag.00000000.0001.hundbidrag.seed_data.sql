-- A bootstrap script after the baseline: runs as hundbidrag on the new database, in one
-- transaction, only when the database is created.
INSERT INTO owners (name, municipality) VALUES ('Astrid', 'Vimmerby'), ('Selma', 'Sunne');
INSERT INTO dogs (owner_id, name, born)
SELECT id, 'Karo', DATE '2019-05-01' FROM owners WHERE name = 'Astrid';
INSERT INTO allowances (dog_id, year, amount)
SELECT id, 2021, 1200.00 FROM dogs WHERE name = 'Karo';
