-- Claims (issue 8.3), honest waits (8.4) and a change feed the api cache reads by a monotonic key (9.4).
--
-- An admitted place must be claimed (any request with its queue token) before its admission step's
-- claim_until; the admission ticker settles each step once, after that deadline, ending the places nobody
-- claimed (ended_at) so their slots go to the next in line. Claims are written by the api in batches.

ALTER TABLE waiting_rooms
    ADD COLUMN claim_seconds int NOT NULL DEFAULT 60 CHECK (claim_seconds BETWEEN 5 AND 3600),
    ADD COLUMN abandoned_total bigint NOT NULL DEFAULT 0 CHECK (abandoned_total >= 0);

-- claim_until: the claim deadline of every place of the step, fixed when admitted (a later policy change
-- does not move it). claims_settled: the ticker has ended this step's unclaimed places (done once).
ALTER TABLE admissions
    ADD COLUMN claim_until timestamptz,
    ADD COLUMN claims_settled boolean NOT NULL DEFAULT false;
-- Steps admitted before claims existed are never ended for want of a claim.
UPDATE admissions SET claim_until = active_until, claims_settled = true;
ALTER TABLE admissions ALTER COLUMN claim_until SET NOT NULL;
CREATE INDEX admissions_claims_unsettled ON admissions (concert_id, claim_until) WHERE NOT claims_settled;

-- claimed_at: when the place was first used after admission (written by the api, batched).
-- ended_at: when the ticker ended it for want of a claim (reason NOT_CLAIMED).
-- change_xid: the transaction that last claimed, completed or ended the place. The api cache reads the
-- places changed since the previous read's snapshot xmin, so a transaction committing late is never missed
-- (a start-time cursor with an overlap could miss it).
ALTER TABLE queue_entries
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN change_xid xid8;
UPDATE queue_entries SET change_xid = pg_current_xact_id() WHERE completed_at IS NOT NULL;
CREATE INDEX queue_entries_changes ON queue_entries (change_xid) WHERE change_xid IS NOT NULL;

-- Stamped by a trigger so every writer (the api's claims, the workers' payments, the ticker) feeds the
-- change feed without knowing about it.
CREATE FUNCTION queue_entry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.claimed_at IS DISTINCT FROM OLD.claimed_at
       OR NEW.completed_at IS DISTINCT FROM OLD.completed_at
       OR NEW.ended_at IS DISTINCT FROM OLD.ended_at THEN
        NEW.change_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER queue_entry_changed BEFORE UPDATE ON queue_entries
    FOR EACH ROW EXECUTE FUNCTION queue_entry_changed();
