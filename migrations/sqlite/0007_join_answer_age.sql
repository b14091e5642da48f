-- Stored join answers are kept a week (a lost answer is retried within minutes), so they carry
-- their age.
ALTER TABLE join_answers ADD COLUMN created_ts INTEGER NOT NULL DEFAULT 0;
