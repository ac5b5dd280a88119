// The booking card while the person is admitted: it opens when their turn comes and closes when the window
// ends; the chosen seat is held (with its countdown, restored after a reload) or given back. Paying for the hold
// is payment.js's.

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
  restoreHold();
}

/** The booking window ended: the seat map stops refreshing and the card's buttons stop working. */
export function closeBooking() {
  clearInterval(state.seatTimer);
  state.seatTimer = null;
  for (const button of document.querySelectorAll("#booking button")) button.disabled = true;
}

/** Holds the selected seat (app.js runs it as the hold button's action). */
export async function holdSeat() {
  if (state.selectedSeat === null) return;
  const seatNo = state.selectedSeat;
  const hold = await command("POST", "/v1/holds", {
    body: { date_id: state.dateId, seat_no: seatNo }, auth: token(), queueToken: state.queueToken,
  });
  showHold(hold);
  await refreshSeats().catch(() => {});
}

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

export function hideHold() {
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

/** Gives the held seat back (app.js runs it as the release button's action). */
export async function release() {
  if (!state.hold) return;
  await command("DELETE", `/v1/holds/${state.hold.hold_id}`, { auth: token(), queueToken: state.queueToken });
  hideHold();
  state.selectedSeat = null;
  $("selection-words").textContent = "Seat given back. Tap a free seat.";
  await refreshSeats();
}
