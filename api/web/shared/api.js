// A small client for the public HTTP API (docs/API.md), shared by the fans' app and the admin page.
// Every failure becomes an ApiProblem carrying the problem document's `code`, so pages can branch on it
// and show it to the person.

/** A failed call: the RFC 9457 problem document, or a stand-in when the network itself failed. */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `request failed with status ${status}`);
    this.status = status;
    this.code = problem.code || (status >= 500 ? "INTERNAL" : "UNKNOWN");
    this.detail = problem.detail || "";
    this.requestId = problem.request_id;
  }
}

/** How long the server may hold a submit or a poll open for its outcome (`Prefer: wait`, at most 30). */
const WAIT_SECONDS = 10;
/** A command whose outcome is not known after this long is reported as unavailable. */
const OUTCOME_DEADLINE_MS = 60_000;

async function readBody(response) {
  const text = await response.text();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 200) };
  }
}

/**
 * One HTTP call. `auth` is an access or admin token, `queueToken` an `X-Queue-Token`. Answers the parsed body
 * with `status` and the response headers; throws ApiProblem on any non-2xx.
 */
export async function call(method, path, { body, auth, queueToken, wait, extraHeaders, cache = "no-store" } = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (queueToken) headers["X-Queue-Token"] = queueToken;
  if (wait) headers.Prefer = `wait=${wait}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // "no-cache" (the seat map) keeps the answer and revalidates it with If-None-Match every time: an
      // unchanged map comes back as a 304 with no body, which the browser answers from its copy.
      cache,
    });
  } catch {
    throw new ApiProblem(0, { code: "NETWORK", detail: "the service could not be reached" });
  }
  const data = await readBody(response);
  if (!response.ok) throw new ApiProblem(response.status, data);
  return { status: response.status, headers: response.headers, data };
}

/**
 * A command that goes through the log (join, hold, pay, release): submit with `Prefer: wait`, then follow
 * `Location` until the outcome is decided. Answers `result` on success; throws the command's problem otherwise.
 */
export async function command(method, path, options = {}) {
  const started = Date.now();
  let answer = await call(method, path, { ...options, wait: WAIT_SECONDS });
  while (answer.status === 202 || answer.data.status === "PENDING") {
    if (Date.now() - started > OUTCOME_DEADLINE_MS) {
      throw new ApiProblem(503, { code: "UNAVAILABLE", detail: "no outcome yet; try again in a moment" });
    }
    const location = answer.headers.get("Location") || `/v1/requests/${answer.data.request_id}`;
    answer = await call("GET", location, { auth: options.auth, wait: WAIT_SECONDS });
  }
  // A join answers its place directly (201); other commands answer the request document.
  if (answer.data.status === "FAILED") {
    const problem = answer.data.error || {};
    throw new ApiProblem(problem.status || 409, problem);
  }
  return answer.data.result ?? answer.data;
}

/** `Retry-After` in milliseconds, within sane bounds, or `fallbackMs` when absent. */
export function retryAfterMs(headers, fallbackMs) {
  const seconds = Number(headers?.get?.("Retry-After"));
  if (!Number.isFinite(seconds) || seconds <= 0) return fallbackMs;
  return Math.min(Math.max(seconds * 1000, 250), 30_000);
}

/** Plain words for the problem codes the contract lists, to show a person what happened and what to do. */
const PLAIN_WORDS = {
  VALIDATION_FAILED: "Something in the form is not right.",
  UNAUTHORIZED: "You are not signed in (or your session ended). Please sign up again.",
  QUEUE_TOKEN_INVALID: "Your place in the waiting room is not valid any more. Join again.",
  QUEUE_NOT_ADMITTED: "It is not your turn yet: you are still in the waiting room.",
  QUEUE_TOKEN_EXPIRED: "Your booking window has ended. Join the waiting room again.",
  QUEUE_PROOF_INVALID: "Your browser's check before joining did not pass. Please join again.",
  CONCERT_NOT_FOUND: "That concert does not exist (any more).",
  DATE_NOT_FOUND: "That date does not exist (any more).",
  DATE_CLOSED: "That date has started or was cancelled, so it can no longer be booked.",
  SEAT_NOT_FOUND: "That seat does not exist.",
  SEAT_UNAVAILABLE: "Someone else got this seat first. Please pick another one.",
  HOLD_LIMIT_REACHED: "You already hold as many seats as one person may for this date. Pay for or give back one first.",
  HOLD_NOT_FOUND: "That hold does not exist any more.",
  HOLD_EXPIRED: "Your hold ran out before payment. Please pick the seat again.",
  ALREADY_PAID: "This seat is already paid for.",
  RESERVATION_NOT_FOUND: "That ticket does not exist (or is not yours).",
  ALREADY_CANCELED: "That ticket is already cancelled; its price was refunded.",
  CANCEL_CLOSED: "It is too late to cancel that ticket: its date is too close or has started.",
  INSUFFICIENT_BALANCE: "Your balance is too low for this seat. Top up, then pay again.",
  INVALID_AMOUNT: "Enter a whole number of won, more than zero and within the top-up limit.",
  REQUEST_NOT_FOUND: "That request is unknown.",
  IDEMPOTENCY_KEY_REUSED: "That request was already made with different details.",
  FORBIDDEN: "You are not allowed to do that.",
  NOT_FOUND: "That page or item does not exist.",
  RATE_LIMITED: "Too many tries at once. Wait a moment, then try again.",
  UNAVAILABLE: "The service is busy right now. Try again in a moment.",
  INTERNAL: "Something went wrong on our side. Try again in a moment.",
  NETWORK: "The service could not be reached. Check your connection and try again.",
};

/** A sentence for a person: the plain words for the code, plus the server's detail when it adds something. */
export function plainWords(problem) {
  const words = PLAIN_WORDS[problem.code] || "Something went wrong.";
  const detail = problem.detail && problem.code === "VALIDATION_FAILED" ? ` (${problem.detail})` : "";
  return words + detail;
}

/** Creates an element: `h("button", {dataset: {test: "x"}, onclick}, "text", child)`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Shows one problem in the page's error slot: `data-test="error"` with the code in `data-code`. */
export function showProblem(slot, problem) {
  const code = problem.code || "UNKNOWN";
  slot.replaceChildren(
    h(
      "div",
      { class: "error", role: "alert", dataset: { test: "error", code } },
      h("span", { class: "error-text" }, plainWords(problem)),
      " ",
      h("code", {}, code),
      h("button", { class: "link", type: "button", "aria-label": "Dismiss", onclick: () => slot.replaceChildren() }, "×"),
    ),
  );
}

/** Won, grouped: "12,000 won" (spelled out: not every device has a font with the won sign's Hangul). */
export function won(amount) {
  return `${Number(amount).toLocaleString("en-US")} won`;
}

/** "about 3 min", "about 40 s", "less than a second". */
export function duration(seconds) {
  if (seconds === undefined || seconds === null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 1) return "any moment now";
  if (s < 90) return `about ${s} s`;
  if (s < 5400) return `about ${Math.round(s / 60)} min`;
  return `about ${Math.round(s / 3600)} h`;
}

/** m:ss until `until` (a Date), never negative. */
export function countdown(until) {
  const s = Math.max(0, Math.ceil((until.getTime() - Date.now()) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** A date and time in the person's own locale and time zone. */
export function when(iso) {
  return new Date(iso).toLocaleString(undefined, {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}
