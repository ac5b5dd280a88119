// The booking card while the person is admitted: it opens when their turn comes and closes when the window
// ends; the chosen seats are held one by one (with the countdown of the first to lapse, restored after a reload)
// or given back. Paying for the held seats of a date, all in one checkout, is payment.js's.

import { call, command, showProblem, won, countdown } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";
import { errorSlot } from "/assets/app/actions.js";
import { renderDates, chooseDate, refreshSeats, setSeatStatus } from "/assets/app/views/seats.js";

/** The person's turn came: the card shows (again) with the concert's dates, and any live hold comes back. */
export async function openBooking() {
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
  restoreHolds();
}

/** The booking window ended: the seat map stops refreshing and the card's buttons stop working. */
export function closeBooking() {
  clearInterval(state.seatTimer);
  state.seatTimer = null;
  for (const button of document.querySelectorAll("#booking button")) button.disabled = true;
}

/** Holds the selected seat (app.js runs it as the hold button's action); it joins the seats to pay together. */
export async function holdSeat() {
  if (state.selectedSeat === null) return;
  const seatNo = state.selectedSeat;
  const hold = await command("POST", "/v1/holds", {
    body: { date_id: state.dateId, seat_no: seatNo }, auth: token(), queueToken: state.queueToken,
  });
  state.holds.push(hold);
  showHolds();
  await refreshSeats().catch(() => {});
}

let holdTimer = null;

/** "seat 7", "seats 3 and 7", "seats 1, 2 and 3". */
export function seatWords(seatNos) {
  const sorted = [...seatNos].sort((a, b) => a - b).map(String);
  if (sorted.length === 1) return `seat ${sorted[0]}`;
  return `seats ${sorted.slice(0, -1).join(", ")} and ${sorted[sorted.length - 1]}`;
}

/**
 * The held seats the pay button pays together (a checkout is of one date): those on the chosen date, else those on
 * the date of the latest hold. Lapsed holds are left out.
 */
export function checkoutHolds() {
  const now = new Date();
  const live = state.holds.filter((x) => new Date(x.expires_at) > now);
  const onChosen = live.filter((x) => x.date_id === state.dateId);
  if (onChosen.length > 0) return onChosen;
  const latest = live[live.length - 1];
  return latest ? live.filter((x) => x.date_id === latest.date_id) : [];
}

/** The hold panel: the seats to pay together, their total, and the time until the first of them lapses. */
function showHolds() {
  const holds = checkoutHolds();
  if (holds.length === 0) {
    hideHold();
    return;
  }
  $("hold-panel").hidden = false;
  $("paid-words").hidden = true;
  const seatNos = holds.map((x) => x.seat_no);
  $("hold-seat").textContent = seatWords(seatNos);
  $("hold-price").textContent = won(holds.reduce((sum, x) => sum + x.price, 0));
  $("pay-button").textContent = holds.length === 1 ? "Pay now" : `Pay for ${holds.length} seats`;
  $("release-button").textContent = holds.length === 1 ? "Give the seat back" : "Give the seats back";
  $("pay-button").disabled = false;
  $("release-button").disabled = false;
  for (const x of holds) {
    const seat = state.seats.get(x.seat_no);
    if (seat && x.date_id === state.dateId) setSeatStatus(seat, "MINE");
  }
  $("hold-button").disabled = true;
  const held = seatWords(seatNos);
  $("selection-words").textContent = `${held[0].toUpperCase()}${held.slice(1)} ${holds.length === 1 ? "is" : "are"} held for you. Tap another free seat to add it.`;
  clearInterval(holdTimer);
  const until = new Date(Math.min(...holds.map((x) => new Date(x.expires_at).getTime())));
  const tick = () => {
    $("hold-countdown").textContent = countdown(until);
    if (until <= new Date()) {
      clearInterval(holdTimer);
      $("hold-countdown").textContent = "0:00";
      // The first hold ran out: the others (if any) are shown on their own; none left, the panel says so.
      state.holds = state.holds.filter((x) => new Date(x.expires_at) > new Date());
      if (checkoutHolds().length > 0) {
        showHolds();
      } else {
        $("pay-button").disabled = true;
        $("selection-words").textContent = "Your hold ran out. Pick a seat again.";
      }
      refreshSeats().catch(() => {});
    }
  };
  tick();
  holdTimer = setInterval(tick, 500);
}

/** The panel closes; the holds are paid, or given back. */
export function hideHold() {
  clearInterval(holdTimer);
  state.holds = [];
  $("hold-panel").hidden = true;
}

/** After a reload, the live holds for this concert (if the server lists holds) come back with their countdown. */
async function restoreHolds() {
  if (state.holds.length > 0) return;
  try {
    const { data } = await call("GET", "/v1/me/holds", { auth: token() });
    const holds = (data.holds || []).filter((x) => x.concert_id === state.concertId);
    holds.sort((a, b) => new Date(a.expires_at) - new Date(b.expires_at));
    if (holds.length > 0) {
      state.holds = holds;
      const latest = holds[holds.length - 1];
      if (state.dates.some((d) => d.date_id === latest.date_id)) await chooseDate(latest.date_id);
      showHolds();
    }
  } catch {
    // An older server without `GET /v1/me/holds`: nothing to restore.
  }
}

/** Gives the held seats in the panel back (app.js runs it as the release button's action). */
export async function release() {
  const holds = checkoutHolds();
  if (holds.length === 0) return;
  const given = new Set();
  try {
    for (const x of holds) {
      await command("DELETE", `/v1/holds/${x.hold_id}`, { auth: token(), queueToken: state.queueToken });
      given.add(x.hold_id);
    }
  } finally {
    state.holds = state.holds.filter((x) => !given.has(x.hold_id));
    if (checkoutHolds().length > 0) showHolds();
    else hideHold();
    state.selectedSeat = null;
    await refreshSeats().catch(() => {});
  }
  $("selection-words").textContent = holds.length === 1 ? "Seat given back. Tap a free seat." : "Seats given back. Tap a free seat.";
}
