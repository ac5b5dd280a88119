// Paying for the held seats of a date in one checkout: the hold panel gives way to the paid words, and the
// wallet and the tickets list are asked again so they show what the payment changed. The server releases the
// person's other holds on the concert; the page forgets them.

import { command, won } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";
import { checkoutHolds, hideHold, seatWords } from "/assets/app/views/booking.js";
import { setSeatStatus } from "/assets/app/views/seats.js";
import { refreshBalance } from "/assets/app/views/wallet.js";
import { refreshReservations } from "/assets/app/views/reservations.js";

/** Pays for the held seats of one date, all or none (app.js runs it as the pay button's action). */
export async function pay() {
  const holds = checkoutHolds();
  if (holds.length === 0) return;
  const paid = await command("POST", "/v1/payments", {
    body: { hold_ids: holds.map((x) => x.hold_id) }, auth: token(), queueToken: state.queueToken,
  });
  hideHold();
  const seats = seatWords(paid.reservations.map((r) => r.seat_no));
  const are = paid.reservations.length === 1 ? "is" : "are";
  $("paid-words").textContent = `Paid ${won(paid.amount)}: ${seats} ${are} yours. Enjoy the show!`;
  $("paid-words").hidden = false;
  $("selection-words").textContent = `${seats[0].toUpperCase()}${seats.slice(1)} ${are} yours.`;
  await Promise.all([refreshBalance(), refreshReservations()]);
  for (const r of paid.reservations) {
    const seat = state.seats.get(r.seat_no);
    if (seat && r.date_id === state.dateId) setSeatStatus(seat, "MINE");
  }
}
