-- The relay claims outbox rows with a lease instead of holding their row locks in a transaction while the
-- broker delivers: a delivery may take as long as the producer's timeout (15 s), longer than a transaction
-- may sit idle (10 s), and a relay that died with rows leased leaves them to the next one when the lease ends.
ALTER TABLE outbox ADD COLUMN leased_until timestamptz;
