-- Checkouts of several seats (issue 18, item 1): one payment pays every seat of a checkout, so each
-- reservation names its payment, and a payment no longer names one reservation or hold. A hold is still paid
-- at most once: reservations keep their unique hold (reservation_per_hold).
ALTER TABLE reservations ADD COLUMN payment_id uuid;
UPDATE reservations r SET payment_id = p.payment_id FROM payments p WHERE p.reservation_id = r.reservation_id;
ALTER TABLE reservations
    ALTER COLUMN payment_id SET NOT NULL,
    ADD CONSTRAINT reservation_paid_by FOREIGN KEY (payment_id) REFERENCES payments;
CREATE INDEX reservations_by_payment ON reservations (payment_id);
ALTER TABLE payments DROP COLUMN reservation_id, DROP COLUMN hold_id;

-- The outbox also carries commands to the log: a checkout releases the payer's live holds on the concert's
-- other dates with RELEASE commands keyed by those dates, written in the checkout's transaction so they are
-- published at least once even if the worker dies right after committing (the command's request id, in its
-- payload, dedupes repeats). `topic` is the relay's destination, without the deployment's prefix.
ALTER TABLE outbox
    ADD COLUMN topic text NOT NULL DEFAULT 'events.payments'
        CHECK (topic IN ('events.payments', 'commands.bookings'));
