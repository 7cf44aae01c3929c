-- recast state, version 1. Times are Unix milliseconds (wall clock: they outlive the process).

CREATE TABLE batches (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    -- which provider the clips are made by: a clip made by the simulator never counts for reAPI
    provider        TEXT    NOT NULL,
    manifest_path   TEXT    NOT NULL,
    base_dir        TEXT    NOT NULL,
    output_dir      TEXT    NOT NULL,
    budget_credits  INTEGER,
    retries         INTEGER NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    paused          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (name, provider)
);

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    batch_id          INTEGER NOT NULL REFERENCES batches (id),
    job_key           TEXT    NOT NULL,
    subject_id        TEXT    NOT NULL,
    output_name       TEXT    NOT NULL,
    -- media sources and clip settings; URLs are made from it at submit time
    spec_json         TEXT    NOT NULL,
    duration_ms       INTEGER NOT NULL,
    estimate_credits  INTEGER,
    state             TEXT    NOT NULL CHECK (state IN ('planned', 'submitting', 'running',
                          'downloading', 'done', 'rejected', 'failed', 'expired', 'unknown',
                          'cancelled')),
    -- why a planned job is not being submitted now (over budget)
    held              TEXT,
    -- why the job needs a person, or the last thing that went wrong
    reason            TEXT,
    attempt_id        INTEGER,
    task_id           TEXT,
    progress          INTEGER,
    polls             INTEGER NOT NULL DEFAULT 0,
    next_poll_at      INTEGER,
    clip_url          TEXT,
    clip_expires_at   INTEGER,
    link_refreshes    INTEGER NOT NULL DEFAULT 0,
    download_failures INTEGER NOT NULL DEFAULT 0,
    not_before        INTEGER,
    output_path       TEXT,
    output_sha256     TEXT,
    output_bytes      INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (batch_id, job_key)
);
CREATE INDEX jobs_by_state ON jobs (state, batch_id);

CREATE TABLE attempts (
    id                INTEGER PRIMARY KEY,
    job_id            INTEGER NOT NULL REFERENCES jobs (id),
    number            INTEGER NOT NULL,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    state             TEXT    NOT NULL CHECK (state IN ('submitting', 'accepted', 'not_sent',
                          'rejected', 'unknown', 'failed', 'completed', 'abandoned')),
    task_id           TEXT,
    credits_estimate  INTEGER,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (job_id, number)
);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    batch_id  INTEGER,
    job_id    INTEGER,
    kind      TEXT    NOT NULL,
    message   TEXT    NOT NULL
);
CREATE INDEX events_by_batch ON events (batch_id, id);
