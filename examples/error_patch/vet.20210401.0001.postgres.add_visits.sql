-- Applies and stays applied.
INSERT INTO visits VALUES (1, 'Karo', 450), (2, 'Bamse', 300);
