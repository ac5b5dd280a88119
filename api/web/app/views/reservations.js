// The person's tickets: one list item per reservation, added once and kept, newest first. Filled on sign-in
// and again after a payment.

import { call, h, won, when } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";

export async function refreshReservations() {
  const { data } = await call("GET", "/v1/me/reservations", { auth: token() });
  state.reservations = data.reservations;
  const list = $("reservation-list");
  const known = new Set([...list.children].map((el) => el.dataset.reservationId));
  for (const r of data.reservations) {
    if (known.has(r.reservation_id)) continue;
    const concert = state.concerts.find((c) => c.concert_id === r.concert_id);
    list.prepend(h(
      "li",
      { class: "reservation", dataset: { test: "reservation", seatNo: String(r.seat_no), reservationId: r.reservation_id } },
      h("strong", {}, `Seat ${r.seat_no}`),
      h("span", {}, concert ? `${concert.title} · ${concert.venue}` : "Concert"),
      h("span", { class: "muted" }, `${won(r.price)} · paid ${when(r.paid_at)}`),
    ));
  }
  $("no-reservations").hidden = data.reservations.length > 0;
}
