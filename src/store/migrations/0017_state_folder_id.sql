-- A random name for this database, put in every idempotency key it makes from now on. Keys
-- were `recast-BATCH-KEY-aN`, and a batch's number only counts within one database: after a
-- lost state folder a new one numbers its batches from 1 again, and a key it made (for a
-- `--simulate` trial, or a new attempt) could equal one the output folder's results file
-- remembers from the lost one, which registration takes over as it was.
CREATE TABLE state_folder (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    tag TEXT    NOT NULL
);
INSERT INTO state_folder (id, tag) VALUES (1, lower(hex(randomblob(4))));
