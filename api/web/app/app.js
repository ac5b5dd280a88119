// The fans' app: sign up, top up, join a concert's waiting room, pick a date and a seat, hold it, pay.
// It talks only to the public API (docs/API.md). Elements that browser tests use carry `data-test` hooks and are
// updated in place (never re-created on a refresh), so a test holding an element never finds it gone.
//
// This file is the entry point: it wires the page's own forms and buttons (those in index.html) to the views in
// views/ (one per card of the page), and starts the page. The views share what the page knows through state.js
// and run people's actions through actions.js; none of them imports this file.

import { showProblem } from "/assets/shared/api.js";
import { $, store, state } from "/assets/app/state.js";
import { action, errorSlot, whenUnauthorized } from "/assets/app/actions.js";
import { signUp, signOut, render } from "/assets/app/views/account.js";
import { charge, refreshBalance } from "/assets/app/views/wallet.js";
import { loadConcerts } from "/assets/app/views/concerts.js";
import { join, enterRoom, tickWindow } from "/assets/app/views/waiting-room.js";
import { holdSeat, release } from "/assets/app/views/booking.js";
import { pay } from "/assets/app/views/payment.js";
import { refreshReservations } from "/assets/app/views/reservations.js";

// A call the server refuses as UNAUTHORIZED signs the person out, whichever view made it.
whenUnauthorized(signOut);

// ---- the page's forms and buttons ---------------------------------------------------------------------------

$("signup-form").addEventListener("submit", action(async () => {
  await signUp();
  await showSignedIn();
}));

$("charge-form").addEventListener("submit", action(charge));

$("sign-out").addEventListener("click", () => {
  signOut();
  errorSlot.replaceChildren();
});

$("hold-button").addEventListener("click", action(holdSeat));
$("pay-button").addEventListener("click", action(pay));
$("release-button").addEventListener("click", action(release));

// ---- the page -----------------------------------------------------------------------------------------------

/** Fills the signed-in page, and goes back into the waiting room this device was last in, if any. */
async function showSignedIn() {
  render();
  await Promise.all([refreshBalance(), loadConcerts(join), refreshReservations()]);
  const saved = state.concertId && store.getItem(`queue:${state.concertId}`);
  if (saved) enterRoom(saved);
}

async function start() {
  setInterval(tickWindow, 1000);
  render();
  try {
    if (state.user) await showSignedIn();
  } catch (problem) {
    if (problem.code === "UNAUTHORIZED") signOut();
    showProblem(errorSlot, problem);
  }
}

start();
