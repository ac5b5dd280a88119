-- REFUSED: a command the api answered 503 although its publish may have reached the log (the broker did not
-- confirm it in time: it stalled, or stopped after persisting it). The api writes this row before it answers,
-- so a copy that does land is never applied: a worker that takes it finds the request recorded and applies
-- nothing. A retry with the same Idempotency-Key deletes the row before publishing again (issue 9).
ALTER TABLE requests DROP CONSTRAINT requests_status_check;
ALTER TABLE requests ADD CONSTRAINT requests_status_check
    CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'REFUSED'));
