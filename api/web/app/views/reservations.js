// The person's tickets: one list item per reservation, added once and kept, newest first, showing whether it
// stands (CONFIRMED) or was cancelled and refunded (CANCELED). A ticket that can still be cancelled has a Cancel
// button, which asks once more (a visible "Yes, cancel it" button) before it cancels. Filled on sign-in, and again
// after a payment or a cancel.

import { command, call, h, won, when } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";
import { action } from "/assets/app/actions.js";
import { setSeatStatus } from "/assets/app/views/seats.js";
import { refreshBalance } from "/assets/app/views/wallet.js";

export async function refreshReservations() {
  const { data } = await call("GET", "/v1/me/reservations", { auth: token() });
  state.reservations = data.reservations;
  const list = $("reservation-list");
  const shown = new Map([...list.children].map((el) => [el.dataset.reservationId, el]));
  // Oldest first, so each new one goes on top of those before it.
  for (const r of [...data.reservations].reverse()) {
    let item = shown.get(r.reservation_id);
    if (!item) {
      item = ticket(r);
      list.prepend(item);
    }
    showStatus(item, r);
  }
  $("no-reservations").hidden = data.reservations.length > 0;
}

/** A new list item for a reservation; its status part is filled by `showStatus`. */
function ticket(r) {
  const concert = state.concerts.find((c) => c.concert_id === r.concert_id);
  return h(
    "li",
    { class: "reservation", dataset: { test: "reservation", seatNo: String(r.seat_no), reservationId: r.reservation_id } },
    h("strong", {}, `Seat ${r.seat_no}`),
    h("span", {}, concert ? `${concert.title} · ${concert.venue}` : "Concert"),
    h("span", { class: "muted" }, `${won(r.price)} · paid ${when(r.paid_at)}`),
    h("span", { class: "ticket-status" }),
  );
}

/** Can it still be cancelled, by the server's deadline and this device's clock? */
function cancellable(r) {
  return r.status === "CONFIRMED" && r.cancelable_until && Date.now() < Date.parse(r.cancelable_until);
}

/** Shows where the reservation stands, in place: the status words and, while allowed, the cancel button. */
function showStatus(item, r) {
  if (item.dataset.status === r.status && item.dataset.cancellable === String(cancellable(r))) return;
  item.dataset.status = r.status;
  item.dataset.cancellable = String(cancellable(r));
  item.classList.toggle("canceled", r.status === "CANCELED");
  const slot = item.querySelector(".ticket-status");
  if (r.status === "CANCELED") {
    slot.replaceChildren(h("span", { class: "muted" }, `Cancelled ${when(r.canceled_at)}, ${won(r.price)} refunded`));
  } else if (cancellable(r)) {
    slot.replaceChildren(
      h("span", { class: "muted" }, `Can be cancelled until ${when(r.cancelable_until)}`),
      h("button", { type: "button", class: "secondary", dataset: { test: "cancel-button" }, onclick: () => askToConfirm(item, r) }, "Cancel"),
    );
  } else {
    slot.replaceChildren(h("span", { class: "muted" }, "Confirmed · too close to the date to cancel"));
  }
}

/** The second step of cancelling: a visible confirm button, or keep the ticket. */
function askToConfirm(item, r) {
  const slot = item.querySelector(".ticket-status");
  slot.replaceChildren(
    h("span", {}, `Cancel seat ${r.seat_no} and get ${won(r.price)} back?`),
    h("button", { type: "button", dataset: { test: "confirm-button" }, onclick: action(() => cancel(r)) }, "Yes, cancel it"),
    h("button", { type: "button", class: "link", onclick: () => { delete item.dataset.status; showStatus(item, r); } }, "Keep it"),
  );
}

/** Cancels the reservation through the log; the list, the wallet and the seat map then show the refund. */
async function cancel(r) {
  try {
    await command("DELETE", `/v1/reservations/${r.reservation_id}`, { auth: token() });
    const seat = r.date_id === state.dateId && state.seats.get(r.seat_no);
    if (seat) setSeatStatus(seat, "AVAILABLE");
  } finally {
    // Whatever the outcome (cancelled, or already cancelled, or too late), show how it stands now.
    await Promise.all([refreshReservations(), refreshBalance()]).catch(() => {});
  }
}
