// Dates and the seat map of the concert whose waiting room let the person in: one button per date and per seat,
// created once and updated in place while the chosen date's seats are asked for again every few seconds.
// Seats held or bought by this person show as MINE.

import { call, h, won, when } from "/assets/shared/api.js";
import { $, state, token } from "/assets/app/state.js";
import { action, errorSlot } from "/assets/app/actions.js";

/** How often the seat map asks for live availability while a date is open. */
const SEAT_REFRESH_MS = 2_000;

export function renderDates() {
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

export async function chooseDate(dateId) {
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
export async function refreshSeats() {
  if (!state.dateId || state.place?.status !== "ACTIVE") return;
  const dateId = state.dateId;
  const { data } = await call("GET", `/v1/concerts/${state.concertId}/dates/${dateId}/seats`, {
    auth: token(), queueToken: state.queueToken, cache: "no-cache",
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
  const held = state.holds.some((x) => x.date_id === dateId && x.seat_no === seatNo
    && new Date(x.expires_at) > new Date());
  const bought = state.reservations.some((r) => r.date_id === dateId && r.seat_no === seatNo);
  return held || bought;
}

export function setSeatStatus(el, status) {
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
