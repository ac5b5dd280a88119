-- Text fields: 1 to 200 characters and no control characters, as the api checks (issue 8, item 6). Postgres
-- cannot store NUL at all; the CHECKs keep the rest out whatever writes the row.
ALTER TABLE users DROP CONSTRAINT users_name_check;
ALTER TABLE users ADD CONSTRAINT users_name_check
    CHECK (length(name) BETWEEN 1 AND 200 AND name !~ '[[:cntrl:]]');
ALTER TABLE concerts ADD CONSTRAINT concerts_title_check
    CHECK (length(title) BETWEEN 1 AND 200 AND title !~ '[[:cntrl:]]');
ALTER TABLE concerts ADD CONSTRAINT concerts_venue_check
    CHECK (length(venue) BETWEEN 1 AND 200 AND venue !~ '[[:cntrl:]]');

-- The body an Idempotency-Key was first used with. The request id is derived from (user, kind, key), so it
-- is the key of this table; the api inserts the row before it publishes a keyed command, and whichever
-- instance inserts first fixes the body: a later use with another body, even while the first is still
-- pending, is refused with IDEMPOTENCY_KEY_REUSED instead of being answered with the first body's outcome.
CREATE TABLE idempotency_keys (
    request_id  uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    fingerprint text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Cursor pagination of the public concert list, newest first.
CREATE INDEX concerts_newest_first ON concerts (created_at DESC, concert_id DESC);
