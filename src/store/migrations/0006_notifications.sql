-- Outgoing notifications (webhooks, the on_batch_done hook): an outbox, so each is delivered at
-- least once across crashes, and recorded. `destination` is a webhook URL or `hook:NAME`.
CREATE TABLE notices (
    id            INTEGER PRIMARY KEY,
    message_id    TEXT    NOT NULL,
    destination   TEXT    NOT NULL,
    event         TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    delivered_at  INTEGER,
    gave_up_at    INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (message_id, destination)
);
CREATE INDEX notices_due ON notices (next_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- How far the notifier has read the event log.
CREATE TABLE notify_cursor (
    name   TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
);
