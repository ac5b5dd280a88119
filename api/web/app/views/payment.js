// Paying for the held seat: the hold panel gives way to the paid words, and the wallet and the tickets list
// are asked again so they show what the payment changed.

import { command, won } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";
import { hideHold } from "/assets/app/views/booking.js";
import { setSeatStatus } from "/assets/app/views/seats.js";
import { refreshBalance } from "/assets/app/views/wallet.js";
import { refreshReservations } from "/assets/app/views/reservations.js";

/** Pays for the current hold (app.js runs it as the pay button's action). */
export async function pay() {
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
}
