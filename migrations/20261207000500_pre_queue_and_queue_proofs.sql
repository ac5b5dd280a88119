-- A fair start (issue 20): a pre-queue shuffled at the opening, and proof-of-work challenges for joins.
--
-- opens_at: joins before it are pre-queued (a place and a token, no position). prequeue_upto: the last seq
-- handed out while the room was pre-queuing (the places 1..=prequeue_upto wait for the draw).
-- The draw happens once, under the room's row lock, by the first join batch or admission step after
-- opens_at: it records drawn_at, draw_places (= prequeue_upto then) and draw_seed (32 random bytes drawn
-- by Postgres at that moment). The order is a pure function of them: places 1..=draw_places sorted by
-- sha256(draw_seed || int8send(seq)), then seq; the place at rank r has line number r. Later joins keep
-- line number = seq (FIFO behind them). Nothing per place is written at the draw, so it is O(1) however
-- long the pre-queue, and every process computes the same order from the recorded seed.
ALTER TABLE waiting_rooms
    ADD COLUMN opens_at timestamptz,
    ADD COLUMN join_proof_bits int NOT NULL DEFAULT 0 CHECK (join_proof_bits BETWEEN 0 AND 24),
    ADD COLUMN prequeue_upto bigint NOT NULL DEFAULT 0 CHECK (prequeue_upto >= 0),
    ADD COLUMN drawn_at timestamptz,
    ADD COLUMN draw_seed bytea,
    ADD COLUMN draw_places bigint,
    ADD CONSTRAINT draw_complete CHECK (
        (drawn_at IS NULL AND draw_seed IS NULL AND draw_places IS NULL)
        OR (drawn_at IS NOT NULL AND octet_length(draw_seed) = 32 AND draw_places BETWEEN 0 AND last_seq));

-- line_no: the place's number in the admission order, the one admission steps (admissions.from_seq ..
-- upto_seq) and the frontier (admitted_upto) count in. It equals seq except for the places of a draw, and
-- is NULL only for a place still waiting for its draw or for the admission step that writes its number.
ALTER TABLE queue_entries ADD COLUMN line_no bigint CHECK (line_no >= 1);
UPDATE queue_entries SET line_no = seq;
CREATE UNIQUE INDEX queue_entries_by_line ON queue_entries (concert_id, line_no);

-- A proof-of-work challenge that let a join in: used once, whichever api instance sees it again.
-- challenge is the signed challenge text itself; rows are kept until the challenge has expired.
CREATE TABLE queue_proofs_used (
    challenge  text PRIMARY KEY,
    user_id    uuid NOT NULL,
    concert_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_proofs_used_expiry ON queue_proofs_used (expires_at);
