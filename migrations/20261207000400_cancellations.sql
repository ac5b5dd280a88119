-- Cancellations and refunds (issue 18, items 3 to 5): a user cancels a reservation, an organizer cancels a
-- date. Both go through the date's partition of the log; these constraints keep the money right whatever
-- reaches the database: a reservation is refunded at most once (unique refund per reservation), a cancelled
-- reservation stays as the record of the sale, and its seat may be sold again (one CONFIRMED reservation per
-- seat, no longer one reservation per seat ever).

ALTER TABLE reservations
    ADD COLUMN status text NOT NULL DEFAULT 'CONFIRMED' CHECK (status IN ('CONFIRMED', 'CANCELED')),
    ADD COLUMN canceled_at timestamptz,
    ADD CONSTRAINT reservation_canceled_at CHECK ((status = 'CANCELED') = (canceled_at IS NOT NULL));
ALTER TABLE reservations DROP CONSTRAINT seat_sold_once;
-- Same name as the constraint it replaces: a violation still reads as SEAT_UNAVAILABLE.
CREATE UNIQUE INDEX seat_sold_once ON reservations (date_id, seat_no) WHERE status = 'CONFIRMED';

-- One row per refunded reservation, written in the cancel's own transaction with the credit, the REFUND
-- ledger entry and the payment.refunded event. payment_id, user_id and date_id are the reservation's, copied
-- so the figures read one table; the reservation's own keys guard them (a date cancel writes 10,000 rows at
-- once, and every foreign key is one more probe per row).
CREATE TABLE refunds (
    refund_id      uuid PRIMARY KEY,
    reservation_id uuid NOT NULL REFERENCES reservations,
    payment_id     uuid NOT NULL,
    user_id        uuid NOT NULL,
    date_id        uuid NOT NULL,
    amount         bigint NOT NULL CHECK (amount >= 0),
    -- CANCEL: the user cancelled it; DATE_CANCELED: the organizer cancelled its date.
    cause          text NOT NULL CHECK (cause IN ('CANCEL', 'DATE_CANCELED')),
    refunded_at    timestamptz NOT NULL,
    CONSTRAINT refund_per_reservation UNIQUE (reservation_id)
);
CREATE INDEX refunds_by_date ON refunds (date_id);

-- A cancelled date takes no more holds or payments. The counts are those of the cancel that closed it, so a
-- repeat answers them again.
ALTER TABLE concert_dates
    ADD COLUMN canceled_at timestamptz,
    ADD COLUMN canceled_holds int CHECK (canceled_holds >= 0),
    ADD COLUMN canceled_refunds int CHECK (canceled_refunds >= 0),
    ADD CONSTRAINT date_canceled_complete
        CHECK ((canceled_at IS NULL) = (canceled_holds IS NULL) AND (canceled_at IS NULL) = (canceled_refunds IS NULL));

-- A reservation can be cancelled until this many hours before its date starts.
ALTER TABLE waiting_rooms
    ADD COLUMN cancel_cutoff_hours int NOT NULL DEFAULT 24 CHECK (cancel_cutoff_hours BETWEEN 0 AND 8760);

ALTER TABLE requests DROP CONSTRAINT requests_kind_check;
ALTER TABLE requests ADD CONSTRAINT requests_kind_check
    CHECK (kind IN ('JOIN', 'HOLD', 'RELEASE', 'PAY', 'CANCEL', 'CANCEL_DATE'));
