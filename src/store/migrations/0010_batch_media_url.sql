-- The public URL a `recast run --media-base-url` published the batch's folder under, so that a
-- daemon on the same state folder (which has no such flag) can publish its media too and finish
-- the batch.
ALTER TABLE batches ADD COLUMN media_base_url TEXT;
