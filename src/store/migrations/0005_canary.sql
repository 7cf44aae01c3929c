-- `canary: N`: a batch submits N subjects, then holds the rest until a person approves.
ALTER TABLE batches ADD COLUMN canary INTEGER;
ALTER TABLE batches ADD COLUMN approved INTEGER NOT NULL DEFAULT 0;
-- Jobs of the batch ever submitted (a first attempt), kept by a trigger so a claim never counts
-- them over the whole batch.
ALTER TABLE batches ADD COLUMN canary_started INTEGER NOT NULL DEFAULT 0;
UPDATE batches SET canary_started = (SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id
    WHERE j.batch_id = batches.id AND a.number = 1);

CREATE TRIGGER attempts_count_started AFTER INSERT ON attempts
WHEN NEW.number = 1
BEGIN
    UPDATE batches SET canary_started = canary_started + 1
    WHERE id = (SELECT batch_id FROM jobs WHERE id = NEW.job_id);
END;
