-- What a `recast run` of a manifest read when it last registered the batch: the identity of
-- every file and folder it depended on (stat: device, inode, size, mtime, ctime), the settings
-- it ran under (a digest), the batch registration it made, and how far the output folder's
-- results file went. A run that finds all of it unchanged resumes the batch as registered
-- instead of reading, hashing and probing every subject again.
CREATE TABLE input_stamps (
    manifest_path   TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    batch_id        INTEGER NOT NULL REFERENCES batches (id),
    context         TEXT    NOT NULL,
    registered_at   INTEGER NOT NULL,
    files           BLOB    NOT NULL,
    results_ino     INTEGER NOT NULL,
    results_len     INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (manifest_path, provider)
);
