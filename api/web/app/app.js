// The fans' app: sign up, top up, join a concert's waiting room, pick a date and a seat, hold it, pay.
// It talks only to the public API (docs/API.md). Elements that browser tests use carry `data-test` hooks and are
// updated in place (never re-created on a refresh), so a test holding an element never finds it gone.

import {
  call, command, showProblem, h, won, duration, countdown, when,
} from "/assets/shared/api.js";
import { $, store, state, token } from "/assets/app/state.js";
import { action, errorSlot, whenUnauthorized } from "/assets/app/actions.js";
import { charge, refreshBalance } from "/assets/app/views/wallet.js";
import { refreshReservations } from "/assets/app/views/reservations.js";
import { holdSeat, release } from "/assets/app/views/booking.js";
import { loadConcerts } from "/assets/app/views/concerts.js";
import { join, enterRoom, stopRoom, tickWindow, resetBooking } from "/assets/app/views/waiting-room.js";
import { pay } from "/assets/app/views/payment.js";

whenUnauthorized(signOut);

// ---- sign-up and wallet -------------------------------------------------------------------------------------

$("signup-form").addEventListener("submit", action(async () => {
  const name = document.querySelector('[data-test="signup-name"]').value.trim();
  const { data } = await call("POST", "/v1/users", { body: { name } });
  state.user = { user_id: data.user_id, access_token: data.access_token, name };
  store.setItem("user", JSON.stringify(state.user));
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

function signOut() {
  stopRoom();
  for (const key of Object.keys(store)) {
    if (key === "user" || key === "concert" || key.startsWith("queue:")) store.removeItem(key);
  }
  state.user = null;
  state.concertId = null;
  render();
}

// ---- the page -----------------------------------------------------------------------------------------------

function render() {
  const signedIn = Boolean(state.user);
  $("signup").hidden = signedIn;
  $("who").hidden = !signedIn;
  $("who-name").textContent = signedIn ? state.user.name : "";
  for (const id of ["wallet", "concerts", "reservations"]) $(id).hidden = !signedIn;
  if (!signedIn) {
    resetBooking();
    $("room").hidden = true;
    $("reservation-list").replaceChildren();
  }
}

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
