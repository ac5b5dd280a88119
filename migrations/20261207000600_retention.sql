-- Retention (issue 19): the workers' `retention` role deletes, in small batches, what nobody needs any more.
-- Each index below lets one batch find its rows without reading the table.

-- Everything of a room's line up to this line number has been pruned, or is being pruned: its places' windows
-- closed more than the retention before. The api answers a place below it EXPIRED without holding it.
ALTER TABLE waiting_rooms ADD COLUMN pruned_upto bigint NOT NULL DEFAULT 0 CHECK (pruned_upto >= 0);

CREATE INDEX requests_decided_by_age ON requests (created_at) WHERE status <> 'PENDING';
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX charge_keys_by_age ON charge_keys (created_at);
CREATE INDEX outbox_published_by_age ON outbox (published_at) WHERE published_at IS NOT NULL;
-- The first step of a room whose window is still inside the retention (see `pruned_upto`).
CREATE INDEX admissions_by_window_end ON admissions (concert_id, active_until);
