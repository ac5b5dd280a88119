// Who is signed in: signing up (the account is kept in localStorage, so a reload keeps the person signed in),
// the header with their name, which cards show, and signing out, which forgets the person and their places in
// line and leaves the waiting room.

import { call } from "/assets/shared/api.js";
import { $, store, state } from "/assets/app/state.js";
import { stopRoom, resetBooking } from "/assets/app/views/waiting-room.js";

/** Creates an account with the name typed in the sign-up form and keeps it (app.js then shows the signed-in page). */
export async function signUp() {
  const name = document.querySelector('[data-test="signup-name"]').value.trim();
  const { data } = await call("POST", "/v1/users", { body: { name } });
  state.user = { user_id: data.user_id, access_token: data.access_token, name };
  store.setItem("user", JSON.stringify(state.user));
}

export function signOut() {
  stopRoom();
  for (const key of Object.keys(store)) {
    if (key === "user" || key === "concert" || key.startsWith("queue:")) store.removeItem(key);
  }
  state.user = null;
  state.concertId = null;
  render();
}

/** Shows the cards of a signed-in person, or only the sign-up card (with nothing of the last person left). */
export function render() {
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
