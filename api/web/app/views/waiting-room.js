// The waiting room: joining a concert's line, watching the place (room.js) and showing where the person stands,
// until their turn opens the booking card (booking.js) and the end of their window closes it. Leaving a room,
// for another concert or by signing out, stops the watching and resets the booking card.

import { command, showProblem, duration, countdown } from "/assets/shared/api.js";
import { watchPlace } from "/assets/app/room.js";
import { $, store, state, token } from "/assets/app/state.js";
import { errorSlot } from "/assets/app/actions.js";
import { chooseConcert, markChosenConcert } from "/assets/app/views/concerts.js";
import { openBooking, closeBooking, hideHold } from "/assets/app/views/booking.js";

export async function join(concertId) {
  const place = await command("POST", `/v1/concerts/${concertId}/queue`, { auth: token() });
  if (state.concertId !== concertId) resetBooking();
  store.setItem("concert", concertId);
  store.setItem(`queue:${concertId}`, place.queue_token);
  state.concertId = concertId;
  chooseConcert(concertId);
  enterRoom(place.queue_token);
  $("room").scrollIntoView({ behavior: "smooth", block: "start" });
}

export function enterRoom(queueToken) {
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

export function stopRoom() {
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

/** The booking window's countdown, once a second while the place is ACTIVE. */
export function tickWindow() {
  if (state.place?.status === "ACTIVE" && state.place.active_until) {
    $("window-left").textContent = countdown(new Date(state.place.active_until));
  }
}

/** Leaving the room: nothing of the last concert's booking stays on the page. */
export function resetBooking() {
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
