-- The whole schema of the booking service. Every invariant the log is trusted to keep in order is also
-- guarded here, so a replay, a rebalance or a zombie consumer cannot break it: balances never go below zero,
-- a seat is sold once (unique date/seat on reservations), a hold is paid once (unique hold on payments), and a
-- request id is applied once (primary key on requests).

CREATE TABLE users (
    user_id    uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    balance    bigint NOT NULL DEFAULT 0 CONSTRAINT balance_not_negative CHECK (balance >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only ledger: every change to a balance has exactly one row here, written in the same transaction.
CREATE TABLE balance_ledger (
    entry_id      bigserial PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users,
    kind          text NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT', 'REFUND')),
    amount        bigint NOT NULL CHECK (amount > 0),
    balance_after bigint NOT NULL CHECK (balance_after >= 0),
    payment_id    uuid,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX balance_ledger_by_user ON balance_ledger (user_id, entry_id DESC);

CREATE TABLE concerts (
    concert_id uuid PRIMARY KEY,
    title      text NOT NULL,
    venue      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE concert_dates (
    date_id     uuid PRIMARY KEY,
    concert_id  uuid NOT NULL REFERENCES concerts,
    starts_at   timestamptz NOT NULL,
    total_seats int NOT NULL CHECK (total_seats BETWEEN 1 AND 10000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX concert_dates_by_concert ON concert_dates (concert_id, starts_at);

-- One row per seat. The current hold lives on the seat row so that taking a seat is one conditional UPDATE:
-- free means not sold and no hold, or a hold whose deadline has passed (time is checked where it is used).
CREATE TABLE seats (
    date_id         uuid NOT NULL REFERENCES concert_dates,
    seat_no         int NOT NULL CHECK (seat_no >= 1),
    price           bigint NOT NULL CHECK (price >= 0),
    hold_id         uuid,
    held_by         uuid,
    hold_expires_at timestamptz,
    reservation_id  uuid,
    PRIMARY KEY (date_id, seat_no),
    CONSTRAINT seat_hold_complete CHECK ((hold_id IS NULL) = (hold_expires_at IS NULL) AND (hold_id IS NULL) = (held_by IS NULL))
);

-- The admission policy and the live counters of a concert's waiting room. The row is the lock that
-- serialises joins and admission steps for that concert, whichever process runs them.
CREATE TABLE waiting_rooms (
    concert_id         uuid PRIMARY KEY REFERENCES concerts,
    max_active_users   int CHECK (max_active_users > 0),
    admit_per_interval int CHECK (admit_per_interval > 0),
    interval_seconds   int CHECK (interval_seconds > 0),
    active_seconds     int NOT NULL CHECK (active_seconds > 0),
    hold_seconds       int NOT NULL CHECK (hold_seconds > 0),
    last_seq           bigint NOT NULL DEFAULT 0,
    admitted_upto      bigint NOT NULL DEFAULT 0,
    next_admit_at      timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT admitted_within_joined CHECK (admitted_upto BETWEEN 0 AND last_seq),
    CONSTRAINT policy_has_a_limit CHECK (max_active_users IS NOT NULL OR admit_per_interval IS NOT NULL),
    CONSTRAINT interval_complete CHECK ((admit_per_interval IS NULL) = (interval_seconds IS NULL))
);

-- A place in line. seq is dense per concert and assigned in log order, so position = seq - admitted_upto.
CREATE TABLE queue_entries (
    concert_id   uuid NOT NULL REFERENCES waiting_rooms,
    seq          bigint NOT NULL CHECK (seq >= 1),
    user_id      uuid NOT NULL REFERENCES users,
    joined_at    timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (concert_id, seq)
);
CREATE INDEX queue_entries_by_user ON queue_entries (concert_id, user_id, seq DESC);
CREATE INDEX queue_entries_completed ON queue_entries (completed_at) WHERE completed_at IS NOT NULL;

-- One row per admission step: seqs from_seq..=upto_seq became ACTIVE at admitted_at until active_until.
-- Steps are contiguous (from_seq = previous admitted_upto + 1), enforced by the conditional update on
-- waiting_rooms.admitted_upto in the same transaction.
CREATE TABLE admissions (
    concert_id   uuid NOT NULL REFERENCES waiting_rooms,
    from_seq     bigint NOT NULL,
    upto_seq     bigint NOT NULL,
    admitted_at  timestamptz NOT NULL,
    active_until timestamptz NOT NULL,
    PRIMARY KEY (concert_id, upto_seq),
    UNIQUE (concert_id, from_seq),
    CHECK (from_seq BETWEEN 1 AND upto_seq)
);

-- Outcome of every command taken from the log, keyed by the request id the api gave it. Inserted first in
-- the command's transaction (the dedupe), completed in the same transaction.
CREATE TABLE requests (
    request_id       uuid PRIMARY KEY,
    user_id          uuid NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('JOIN', 'HOLD', 'RELEASE', 'PAY')),
    fingerprint      text NOT NULL,
    status           text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    result           jsonb,
    error            jsonb,
    source_partition int,
    source_offset    bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);

CREATE TABLE holds (
    hold_id    uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users,
    concert_id uuid NOT NULL REFERENCES concerts,
    date_id    uuid NOT NULL,
    seat_no    int NOT NULL,
    price      bigint NOT NULL CHECK (price >= 0),
    state      text NOT NULL CHECK (state IN ('HELD', 'RELEASED', 'PAID', 'EXPIRED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    FOREIGN KEY (date_id, seat_no) REFERENCES seats
);
CREATE INDEX holds_live_by_user ON holds (user_id, date_id) WHERE state = 'HELD';
CREATE INDEX holds_live_by_deadline ON holds (expires_at) WHERE state = 'HELD';

CREATE TABLE reservations (
    reservation_id uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users,
    concert_id     uuid NOT NULL REFERENCES concerts,
    date_id        uuid NOT NULL,
    seat_no        int NOT NULL,
    price          bigint NOT NULL,
    hold_id        uuid NOT NULL REFERENCES holds,
    paid_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT seat_sold_once UNIQUE (date_id, seat_no),
    CONSTRAINT reservation_per_hold UNIQUE (hold_id),
    FOREIGN KEY (date_id, seat_no) REFERENCES seats
);
CREATE INDEX reservations_by_user ON reservations (user_id, paid_at DESC);

CREATE TABLE payments (
    payment_id     uuid PRIMARY KEY,
    reservation_id uuid NOT NULL REFERENCES reservations,
    hold_id        uuid NOT NULL,
    user_id        uuid NOT NULL REFERENCES users,
    amount         bigint NOT NULL CHECK (amount >= 0),
    paid_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hold_paid_once UNIQUE (hold_id)
);

-- Transactional outbox: written in the payment transaction, published by the relay, marked after the
-- broker confirmed. event_id lets consumers drop the duplicates an at-least-once relay may send.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    event_type   text NOT NULL,
    event_key    text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     int NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
