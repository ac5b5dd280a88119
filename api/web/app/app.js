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

/** How often the seat map asks for live availability while a date is open. */
const SEAT_REFRESH_MS = 2_000;

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

// ---- dates and seats ----------------------------------------------------------------------------------------

async function openBooking() {
  $("booking").hidden = false;
  $("paid-words").hidden = true;
  // A new admission after an earlier one ended: the date and seat buttons work again.
  for (const button of document.querySelectorAll("#booking button")) button.disabled = false;
  $("hold-button").disabled = state.selectedSeat === null;
  if (state.dateId) chooseDate(state.dateId).catch(() => {});
  try {
    const { data } = await call("GET", `/v1/concerts/${state.concertId}/dates`, {
      auth: token(), queueToken: state.queueToken,
    });
    state.dates = data.dates;
    renderDates();
  } catch (problem) {
    showProblem(errorSlot, problem);
  }
  restoreHold();
}

function closeBooking() {
  clearInterval(state.seatTimer);
  state.seatTimer = null;
  for (const button of document.querySelectorAll("#booking button")) button.disabled = true;
}

function renderDates() {
  const list = $("date-list");
  const byId = new Map([...list.children].map((el) => [el.dataset.dateId, el]));
  for (const date of state.dates) {
    let option = byId.get(date.date_id);
    if (!option) {
      option = h(
        "button",
        { type: "button", class: "date-option", dataset: { test: "date-option", dateId: date.date_id },
          onclick: action(() => chooseDate(date.date_id)) },
        h("span", { class: "date-when" }, when(date.starts_at)),
        h("span", { class: "date-left muted" }),
      );
      list.append(option);
    }
    option.querySelector(".date-left").textContent = `${date.available_seats} of ${date.total_seats} seats free`;
    option.classList.toggle("chosen", date.date_id === state.dateId);
  }
  if (state.dates.length === 0) list.replaceChildren(h("p", { class: "muted" }, "No dates left to book."));
}

async function chooseDate(dateId) {
  if (state.dateId !== dateId) {
    state.dateId = dateId;
    state.selectedSeat = null;
    state.seats.clear();
    $("seat-map").replaceChildren();
  }
  renderDates();
  $("seat-area").hidden = false;
  await refreshSeats();
  clearInterval(state.seatTimer);
  state.seatTimer = setInterval(() => refreshSeats().catch(() => {}), SEAT_REFRESH_MS);
}

/** Live availability; seats held or bought by this person show as MINE. */
async function refreshSeats() {
  if (!state.dateId || state.place?.status !== "ACTIVE") return;
  const dateId = state.dateId;
  const { data } = await call("GET", `/v1/concerts/${state.concertId}/dates/${dateId}/seats`, {
    auth: token(), queueToken: state.queueToken,
  });
  if (dateId !== state.dateId) return;
  const map = $("seat-map");
  for (const seat of data.seats) {
    let el = state.seats.get(seat.seat_no);
    if (!el) {
      el = h("button", {
        type: "button", class: "seat", dataset: { test: "seat", seatNo: String(seat.seat_no) },
        onclick: () => selectSeat(seat.seat_no),
      }, String(seat.seat_no));
      state.seats.set(seat.seat_no, el);
      map.append(el);
    }
    el.dataset.price = String(seat.price);
    setSeatStatus(el, isMine(dateId, seat.seat_no, seat.status) ? "MINE" : seat.status);
  }
  const free = data.seats.filter((s) => s.status === "AVAILABLE").length;
  const date = state.dates.find((d) => d.date_id === dateId);
  if (date) {
    date.available_seats = free;
    renderDates();
  }
}

function isMine(dateId, seatNo, status) {
  if (status === "AVAILABLE") return false;
  const held = state.hold && state.hold.date_id === dateId && state.hold.seat_no === seatNo
    && new Date(state.hold.expires_at) > new Date();
  const bought = state.reservations.some((r) => r.date_id === dateId && r.seat_no === seatNo);
  return held || bought;
}

function setSeatStatus(el, status) {
  el.dataset.status = status;
  el.className = `seat ${status}${Number(el.dataset.seatNo) === state.selectedSeat ? " selected" : ""}`;
  el.setAttribute("aria-label", `Seat ${el.dataset.seatNo}, ${status.toLowerCase()}`);
}

function selectSeat(seatNo) {
  errorSlot.replaceChildren();
  state.selectedSeat = seatNo;
  for (const el of state.seats.values()) setSeatStatus(el, el.dataset.status);
  const el = state.seats.get(seatNo);
  const price = won(el.dataset.price);
  const words = {
    AVAILABLE: `Seat ${seatNo} · ${price}`,
    HELD: `Seat ${seatNo} · ${price} · someone is holding it right now`,
    SOLD: `Seat ${seatNo} is sold`,
    MINE: `Seat ${seatNo} is yours`,
  };
  $("selection-words").textContent = words[el.dataset.status];
  $("hold-button").disabled = el.dataset.status === "MINE";
}

$("hold-button").addEventListener("click", action(async () => {
  if (state.selectedSeat === null) return;
  const seatNo = state.selectedSeat;
  const hold = await command("POST", "/v1/holds", {
    body: { date_id: state.dateId, seat_no: seatNo }, auth: token(), queueToken: state.queueToken,
  });
  showHold(hold);
  await refreshSeats().catch(() => {});
}));

// ---- hold and payment ---------------------------------------------------------------------------------------

let holdTimer = null;

function showHold(hold) {
  state.hold = hold;
  $("hold-panel").hidden = false;
  $("paid-words").hidden = true;
  $("hold-seat").textContent = String(hold.seat_no);
  $("hold-price").textContent = won(hold.price);
  $("pay-button").disabled = false;
  $("release-button").disabled = false;
  const seat = state.seats.get(hold.seat_no);
  if (seat && hold.date_id === state.dateId) setSeatStatus(seat, "MINE");
  $("hold-button").disabled = true;
  $("selection-words").textContent = `Seat ${hold.seat_no} is held for you.`;
  clearInterval(holdTimer);
  const tick = () => {
    const until = new Date(hold.expires_at);
    $("hold-countdown").textContent = countdown(until);
    if (until <= new Date()) {
      clearInterval(holdTimer);
      $("hold-countdown").textContent = "0:00";
      $("pay-button").disabled = true;
      $("selection-words").textContent = "Your hold ran out. Pick a seat again.";
      refreshSeats().catch(() => {});
    }
  };
  tick();
  holdTimer = setInterval(tick, 500);
}

function hideHold() {
  clearInterval(holdTimer);
  state.hold = null;
  $("hold-panel").hidden = true;
}

/** After a reload, the live hold for this concert (if the server lists holds) comes back with its countdown. */
async function restoreHold() {
  if (state.hold) return;
  try {
    const { data } = await call("GET", "/v1/me/holds", { auth: token() });
    const hold = (data.holds || []).find((x) => x.concert_id === state.concertId);
    if (hold) {
      if (state.dates.some((d) => d.date_id === hold.date_id)) await chooseDate(hold.date_id);
      showHold(hold);
    }
  } catch {
    // An older server without `GET /v1/me/holds`: nothing to restore.
  }
}

$("pay-button").addEventListener("click", action(async () => {
  if (!state.hold) return;
  const paid = await command("POST", "/v1/payments", {
    body: { hold_id: state.hold.hold_id }, auth: token(), queueToken: state.queueToken,
  });
  hideHold();
  $("paid-words").textContent = `Paid ${won(paid.amount)}: seat ${paid.seat_no} is yours. Enjoy the show!`;
  $("paid-words").hidden = false;
  $("selection-words").textContent = `Seat ${paid.seat_no} is yours.`;
  await Promise.all([refreshBalance(), refreshReservations()]);
  const seat = state.seats.get(paid.seat_no);
  if (seat && paid.date_id === state.dateId) setSeatStatus(seat, "MINE");
}));

$("release-button").addEventListener("click", action(async () => {
  if (!state.hold) return;
  await command("DELETE", `/v1/holds/${state.hold.hold_id}`, { auth: token(), queueToken: state.queueToken });
  hideHold();
  state.selectedSeat = null;
  $("selection-words").textContent = "Seat given back. Tap a free seat.";
  await refreshSeats();
}));

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
