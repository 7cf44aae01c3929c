-- What each subject image's header said (format, size in pixels and bytes), by the image's
-- content (its sha256), so that planning a folder again opens only the images that changed: a
-- standing performance that gains one image probes that image, not the whole folder. `prober`
-- is the version of the header readers that found it: a newer reader probes again. Kept, and
-- dropped after a month unread, with the file digests.
CREATE TABLE image_probes (
    sha256      TEXT PRIMARY KEY,
    prober      INTEGER NOT NULL,
    format      TEXT NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL
) WITHOUT ROWID;
