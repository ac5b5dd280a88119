// Watching one place in a waiting room: the server-sent event stream first (`GET /v1/queue/events`, the token in
// the query because EventSource cannot set headers); when the stream fails or is not offered, polling
// `GET /v1/queue/status` as often as its `Retry-After` says. Either way the place is claimed while the page is open.

import { call, retryAfterMs } from "/assets/shared/api.js";

/** Statuses after which nothing changes any more. */
const FINAL = new Set(["EXPIRED", "COMPLETED"]);
/** Poll interval when the server gives no `Retry-After`, and after a failed poll. */
const DEFAULT_POLL_MS = 2_000;
const ERROR_POLL_MS = 3_000;

/**
 * Calls `onPlace(status)` with the place's status document at once and on every change, and `onProblem(problem)`
 * when the token is refused. Returns a function that stops watching.
 */
export function watchPlace(queueToken, onPlace, onProblem) {
  let stopped = false;
  let stream = null;
  let timer = null;
  let last = "";

  const deliver = (place) => {
    const text = JSON.stringify(place);
    if (text !== last) {
      last = text;
      onPlace(place);
    }
    if (FINAL.has(place.status)) stop();
  };

  const poll = async () => {
    if (stopped) return;
    let delay = ERROR_POLL_MS;
    try {
      const { data, headers } = await call("GET", "/v1/queue/status", { queueToken });
      deliver(data);
      delay = retryAfterMs(headers, DEFAULT_POLL_MS);
    } catch (problem) {
      if (problem.status === 401) {
        onProblem(problem);
        stop();
        return;
      }
      // A blip (network, 5xx, rate limit): keep the place, try again shortly.
    }
    if (!stopped) timer = setTimeout(poll, delay);
  };

  const fallBackToPolling = () => {
    stream?.close();
    stream = null;
    if (!stopped && timer === null) poll();
  };

  if (typeof EventSource === "function") {
    stream = new EventSource(`/v1/queue/events?queue_token=${encodeURIComponent(queueToken)}`);
    stream.addEventListener("status", (event) => {
      try {
        deliver(JSON.parse(event.data));
      } catch {
        fallBackToPolling();
      }
    });
    // The stream is not offered, broke, or ended: the poll loop carries on (and sees a final status too).
    stream.addEventListener("error", fallBackToPolling);
  } else {
    poll();
  }

  function stop() {
    stopped = true;
    stream?.close();
    stream = null;
    clearTimeout(timer);
  }
  return stop;
}
