-- `canary: N`: a batch submits N subjects, then holds the rest until a person approves.
ALTER TABLE batches ADD COLUMN canary INTEGER;
ALTER TABLE batches ADD COLUMN approved INTEGER NOT NULL DEFAULT 0;
