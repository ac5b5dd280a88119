-- Top-ups sent with an Idempotency-Key (issue 18): the first charge with a key records its amount and the
-- balance right after it, and a repeat of the key by the same user is answered from here without crediting
-- again. The row is inserted first, in the charge's own transaction: a copy racing it waits on the primary
-- key until that transaction ends, then finds the row (or, if the first rolled back, charges itself).
-- No foreign key to users: a charge for an unknown user is refused and rolled back before anything stays.
CREATE TABLE charge_keys (
    user_id       uuid NOT NULL,
    idem_key      text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 200),
    amount        bigint NOT NULL CHECK (amount > 0),
    -- Set in the same transaction, right after the balance moved; NULL is never seen outside it.
    balance_after bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idem_key)
);
