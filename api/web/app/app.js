// The fans' app: sign up, top up, join a concert's waiting room, pick a date and a seat, hold it, pay.
// It talks only to the public API (docs/API.md). Elements that browser tests use carry `data-test` hooks and are
// updated in place (never re-created on a refresh), so a test holding an element never finds it gone.

import {
  call, command, showProblem, h, won, duration, countdown, when,
} from "/assets/shared/api.js";
import { watchPlace } from "/assets/app/room.js";
import { $, store, state, token } from "/assets/app/state.js";
import { action, errorSlot, whenUnauthorized } from "/assets/app/actions.js";
import { charge, refreshBalance } from "/assets/app/views/wallet.js";
import { refreshReservations } from "/assets/app/views/reservations.js";
import { openBooking, closeBooking, holdSeat, hideHold, release } from "/assets/app/views/booking.js";
import { pay } from "/assets/app/views/payment.js";

whenUnauthorized(signOut);

// ---- sign-up and wallet -------------------------------------------------------------------------------------

$("signup-form").addEventListener("submit", action(async () => {
  const name = document.querySelector('[data-test="signup-name"]').value.trim();
  const { data } = await call("POST", "/v1/users", { body: { name } });
  state.user = { user_id: data.user_id, access_token: data.access_token, name };
  store.setItem("user", JSON.stringify(state.user));
  await showSignedIn();
}));

$("charge-form").addEventListener("submit", action(charge));

$("sign-out").addEventListener("click", () => {
  signOut();
  errorSlot.replaceChildren();
});

$("hold-button").addEventListener("click", action(holdSeat));
$("pay-button").addEventListener("click", action(pay));
$("release-button").addEventListener("click", action(release));

function signOut() {
  stopRoom();
  for (const key of Object.keys(store)) {
    if (key === "user" || key === "concert" || key.startsWith("queue:")) store.removeItem(key);
  }
  state.user = null;
  state.concertId = null;
  render();
}

// ---- concerts -----------------------------------------------------------------------------------------------

async function loadConcerts() {
  const { data } = await call("GET", "/v1/concerts");
  state.concerts = data.concerts;
  const list = $("concert-list");
  const known = new Set([...list.children].map((el) => el.dataset.concertId));
  for (const concert of data.concerts) {
    if (known.has(concert.concert_id)) continue;
    list.append(concertCard(concert));
  }
  $("no-concerts").hidden = data.concerts.length > 0;
  markChosenConcert();
}

function concertCard(concert) {
  return h(
    "article",
    { class: "concert-card", dataset: { test: "concert-card", concertId: concert.concert_id },
      onclick: (event) => event.target.closest("button") || chooseConcert(concert.concert_id) },
    h("div", { class: "grow" }, h("h3", {}, concert.title), h("p", { class: "muted" }, concert.venue)),
    h("button", { type: "button", dataset: { test: "join-button" }, onclick: action(() => join(concert.concert_id)) }, "Join"),
  );
}

/** Tapping a card chooses it: it comes first in the list, so its join button is the first one on the page. */
function chooseConcert(concertId) {
  const card = [...$("concert-list").children].find((el) => el.dataset.concertId === concertId);
  if (card) $("concert-list").prepend(card);
  for (const el of $("concert-list").children) el.classList.toggle("tapped", el === card);
}

function markChosenConcert() {
  for (const card of $("concert-list").children) {
    card.classList.toggle("chosen", card.dataset.concertId === state.concertId);
  }
}

// ---- the waiting room ---------------------------------------------------------------------------------------

async function join(concertId) {
  const place = await command("POST", `/v1/concerts/${concertId}/queue`, { auth: token() });
  if (state.concertId !== concertId) resetBooking();
  store.setItem("concert", concertId);
  store.setItem(`queue:${concertId}`, place.queue_token);
  state.concertId = concertId;
  chooseConcert(concertId);
  enterRoom(place.queue_token);
  $("room").scrollIntoView({ behavior: "smooth", block: "start" });
}

function enterRoom(queueToken) {
  stopRoom();
  state.queueToken = queueToken;
  state.place = null;
  state.firstPosition = null;
  const concert = state.concerts.find((c) => c.concert_id === state.concertId);
  $("room-title").textContent = concert ? `· ${concert.title}` : "";
  $("room").hidden = false;
  markChosenConcert();
  state.stopWatching = watchPlace(queueToken, onPlace, onPlaceProblem);
}

function stopRoom() {
  state.stopWatching?.();
  state.stopWatching = null;
  clearInterval(state.seatTimer);
  state.seatTimer = null;
}

const STATUS_WORDS = {
  WAITING: "You are in line.",
  ACTIVE: "It is your turn! Pick a date and a seat.",
  EXPIRED: "Your booking window has ended.",
  COMPLETED: "Done: you bought a ticket with this place.",
};

/** A new status document, from the event stream or a poll. */
function onPlace(place) {
  const before = state.place?.status;
  state.place = place;
  $("queue-status").textContent = place.status;
  $("queue-status").className = `pill ${place.status}`;
  let words = STATUS_WORDS[place.status] || "";
  if (place.status === "EXPIRED" && place.reason === "NOT_CLAIMED") words = "Your turn came but the page was not open, so the place went to the next fan.";
  $("status-words").textContent = words;
  if (place.status === "WAITING") {
    if (state.firstPosition === null || place.position > state.firstPosition) state.firstPosition = place.position;
    $("queue-position").textContent = String(place.position ?? "—");
    $("queue-eta").textContent = duration(place.eta_seconds);
    $("queue-eta").dataset.seconds = place.eta_seconds ?? "";
  } else {
    $("queue-position").textContent = "—";
    $("queue-eta").textContent = place.status === "ACTIVE" ? "now" : "—";
    $("queue-eta").dataset.seconds = place.status === "ACTIVE" ? "0" : "";
  }
  setProgress(place);
  $("window-box").hidden = place.status !== "ACTIVE" || !place.active_until;
  tickWindow();
  $("room-help").hidden = place.status !== "WAITING";
  if (place.status === "ACTIVE" && before !== "ACTIVE") openBooking();
  if (place.status !== "ACTIVE" && before === "ACTIVE") closeBooking();
}

function setProgress(place) {
  let percent = 0;
  if (place.status === "WAITING" && state.firstPosition) {
    // Position 1 means next in line: from the first position seen down to 1 fills the bar to almost full.
    percent = Math.round((100 * (state.firstPosition - place.position + 1)) / (state.firstPosition + 1));
  } else if (place.status !== "WAITING") {
    percent = 100;
  }
  $("queue-progress-fill").style.width = `${percent}%`;
  $("queue-progress").setAttribute("aria-valuenow", String(percent));
}

function onPlaceProblem(problem) {
  // A forged, stale or foreign token will never work again: forget it, so the person can join afresh.
  if (problem.code === "QUEUE_TOKEN_INVALID" || problem.code === "QUEUE_TOKEN_EXPIRED") {
    store.removeItem(`queue:${state.concertId}`);
    stopRoom();
  }
  showProblem(errorSlot, problem);
}

// ---- booking ------------------------------------------------------------------------------------------------

function resetBooking() {
  stopRoom();
  hideHold();
  state.dates = [];
  state.dateId = null;
  state.selectedSeat = null;
  state.seats.clear();
  $("date-list").replaceChildren();
  $("seat-map").replaceChildren();
  $("seat-area").hidden = true;
  $("booking").hidden = true;
  $("paid-words").hidden = true;
}

// ---- the page -----------------------------------------------------------------------------------------------

function render() {
  const signedIn = Boolean(state.user);
  $("signup").hidden = signedIn;
  $("who").hidden = !signedIn;
  $("who-name").textContent = signedIn ? state.user.name : "";
  for (const id of ["wallet", "concerts", "reservations"]) $(id).hidden = !signedIn;
  if (!signedIn) {
    resetBooking();
    $("room").hidden = true;
    $("reservation-list").replaceChildren();
  }
}

async function showSignedIn() {
  render();
  await Promise.all([refreshBalance(), loadConcerts(), refreshReservations()]);
  const saved = state.concertId && store.getItem(`queue:${state.concertId}`);
  if (saved) enterRoom(saved);
}

/** The booking window's countdown, once a second while the place is ACTIVE. */
function tickWindow() {
  if (state.place?.status === "ACTIVE" && state.place.active_until) {
    $("window-left").textContent = countdown(new Date(state.place.active_until));
  }
}

async function start() {
  setInterval(tickWindow, 1000);
  render();
  try {
    if (state.user) await showSignedIn();
  } catch (problem) {
    if (problem.code === "UNAUTHORIZED") signOut();
    showProblem(errorSlot, problem);
  }
}

start();
