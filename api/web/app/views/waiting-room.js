// The waiting room: joining a concert's line, watching the place (room.js) and showing where the person stands,
// until their turn opens the booking card (booking.js) and the end of their window closes it. Leaving a room,
// for another concert or by signing out, stops the watching and resets the booking card.

import { call, command, h, showProblem, duration, countdown } from "/assets/shared/api.js";
import { watchPlace } from "/assets/app/room.js";
import { $, store, state, token } from "/assets/app/state.js";
import { errorSlot } from "/assets/app/actions.js";
import { chooseConcert, markChosenConcert } from "/assets/app/views/concerts.js";
import { openBooking, closeBooking, hideHold } from "/assets/app/views/booking.js";

export async function join(concertId) {
  const extraHeaders = await proofOfWork(concertId);
  const place = await command("POST", `/v1/concerts/${concertId}/queue`, { auth: token(), extraHeaders });
  if (state.concertId !== concertId) resetBooking();
  store.setItem("concert", concertId);
  store.setItem(`queue:${concertId}`, place.queue_token);
  state.concertId = concertId;
  chooseConcert(concertId);
  enterRoom(place.queue_token);
  $("room").scrollIntoView({ behavior: "smooth", block: "start" });
}

/**
 * The proof of work the room asks a join for (none when its `bits` is 0): a fresh challenge, solved in a Web
 * Worker while a progress bar shows the expected share of the work done. Answers the headers for the join.
 */
async function proofOfWork(concertId) {
  const { data } = await call("GET", `/v1/concerts/${concertId}/queue/challenge`, { auth: token() });
  if (!data.bits) return {};
  const box = proofBox();
  box.hidden = false;
  const fill = box.querySelector(".progress-fill");
  const bar = box.querySelector("[role=progressbar]");
  const expected = 2 ** data.bits;
  try {
    const nonce = await new Promise((resolve, reject) => {
      const worker = new Worker("/assets/app/proof-worker.js");
      worker.onmessage = (event) => {
        if (event.data.nonce !== undefined) {
          worker.terminate();
          resolve(event.data.nonce);
          return;
        }
        // Tries against the expected number: a curve that nears 100% without promising when it gets there.
        const percent = Math.round(100 * (1 - Math.exp(-event.data.progress / expected)));
        fill.style.width = `${percent}%`;
        bar.setAttribute("aria-valuenow", String(percent));
      };
      worker.onerror = (err) => {
        worker.terminate();
        reject(err);
      };
      worker.postMessage({ challenge: data.challenge, bits: data.bits });
    });
    fill.style.width = "100%";
    return { "X-Queue-Proof": `${data.challenge}.${nonce}` };
  } finally {
    box.hidden = true;
  }
}

/** The "checking your browser" box with its progress bar, made on first use. */
function proofBox() {
  let box = document.getElementById("proof-box");
  if (box) return box;
  box = h(
    "div",
    { id: "proof-box", "data-test": "queue-proof", class: "card" },
    h("p", {}, "Checking your browser before you join the line…"),
    h(
      "div",
      { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "data-test": "queue-proof-progress" },
      h("div", { class: "progress-fill" }),
    ),
  );
  errorSlot.before(box);
  return box;
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
  clearInterval(state.opensTimer);
  state.opensTimer = null;
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
  showOpening(place);
  if (place.status === "WAITING" && place.opens_at) {
    // Before the opening: no position yet, a countdown instead (the order is drawn at the opening).
    words = "The sale has not opened yet. When it opens, everyone in line now gets a place in a random order: no need to hurry.";
    $("status-words").textContent = words;
    $("queue-position").textContent = "drawn at the opening";
    $("queue-eta").textContent = "—";
    $("queue-eta").dataset.seconds = "";
  } else if (place.status === "WAITING") {
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

/** The countdown to the opening, next to the place: shown while the place waits for the draw. */
function showOpening(place) {
  let row = document.getElementById("opens-row");
  if (!row) {
    row = h(
      "div",
      { id: "opens-row" },
      h("dt", {}, "The sale opens in"),
      h("dd", { id: "queue-opens-at", "data-test": "queue-opens-at" }, "—"),
    );
    $("queue-position").parentElement.before(row);
  }
  clearInterval(state.opensTimer);
  state.opensTimer = null;
  const opensAt = place.status === "WAITING" && place.opens_at ? new Date(place.opens_at) : null;
  row.hidden = !opensAt;
  if (!opensAt) return;
  const el = $("queue-opens-at");
  el.dataset.opensAt = place.opens_at;
  const tick = () => {
    el.textContent = Date.now() < opensAt.getTime() ? countdown(opensAt) : "opening…";
  };
  tick();
  state.opensTimer = setInterval(tick, 250);
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
