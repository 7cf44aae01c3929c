-- An input stamp's files are kept in chunks of about 64 KiB, written as the plan is read back
-- and read back as they are checked: a stamp of 100,000 files (about 9.5 MB) is never held
-- whole. Stamps kept whole before are forgotten (`files` emptied, which no check takes as
-- unchanged): their next run plans in full once, and keeps a stamp in chunks.
CREATE TABLE input_stamp_chunks (
    manifest_path TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    bytes         BLOB    NOT NULL,
    PRIMARY KEY (manifest_path, provider, seq)
) WITHOUT ROWID;
UPDATE input_stamps SET files = x'';
