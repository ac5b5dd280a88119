// The concert list: one card per concert, added once and kept, with the concert the person chose marked.
// A card's join button joins that concert's waiting room; the join itself is waiting-room.js's, handed in as an
// argument because the waiting room marks cards here (so this file cannot import it back).

import { call, h } from "/assets/shared/api.js";
import { $, state } from "/assets/app/state.js";
import { action } from "/assets/app/actions.js";

/** Adds a card for each concert not shown yet; `join(concertId)` is what a card's join button does. */
export async function loadConcerts(join) {
  const { data } = await call("GET", "/v1/concerts");
  state.concerts = data.concerts;
  const list = $("concert-list");
  const known = new Set([...list.children].map((el) => el.dataset.concertId));
  for (const concert of data.concerts) {
    if (known.has(concert.concert_id)) continue;
    list.append(concertCard(concert, join));
  }
  $("no-concerts").hidden = data.concerts.length > 0;
  markChosenConcert();
}

function concertCard(concert, join) {
  return h(
    "article",
    { class: "concert-card", dataset: { test: "concert-card", concertId: concert.concert_id },
      onclick: (event) => event.target.closest("button") || chooseConcert(concert.concert_id) },
    h("div", { class: "grow" }, h("h3", {}, concert.title), h("p", { class: "muted" }, concert.venue)),
    h("button", { type: "button", dataset: { test: "join-button" }, onclick: action(() => join(concert.concert_id)) }, "Join"),
  );
}

/** Tapping a card chooses it: it comes first in the list, so its join button is the first one on the page. */
export function chooseConcert(concertId) {
  const card = [...$("concert-list").children].find((el) => el.dataset.concertId === concertId);
  if (card) $("concert-list").prepend(card);
  for (const el of $("concert-list").children) el.classList.toggle("tapped", el === card);
}

export function markChosenConcert() {
  for (const card of $("concert-list").children) {
    card.classList.toggle("chosen", card.dataset.concertId === state.concertId);
  }
}
