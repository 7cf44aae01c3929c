-- When a plan last read each file: digests no plan has needed for a month are dropped, so
-- images that came and went through a watched folder do not stay in the state folder for ever.
-- Rows kept so far count as read now.
ALTER TABLE file_digests ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE file_digests SET seen_at = CAST(unixepoch('subsec') * 1000 AS INTEGER);
