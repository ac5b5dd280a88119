// The wallet card: the balance, and topping it up. Payment (payment.js) asks it to show the balance again.

import { call, won } from "/assets/shared/api.js";
import { $, token } from "/assets/app/state.js";

/** Tops up by what the person typed in the wallet's form (app.js runs it as the form's action). */
export async function charge() {
  const input = document.querySelector('[data-test="charge-amount"]');
  const text = input.value.trim().replaceAll(",", "");
  // Send what the person typed when it is a number, so the server's own rule (and code) decides; words are
  // not a number of won at all.
  const amount = /^-?\d+$/.test(text) ? Number(text) : text;
  const { data } = await call("POST", "/v1/me/balance/charges", { body: { amount }, auth: token() });
  setBalance(data.balance);
  input.value = "";
}

function setBalance(balance) {
  $("balance").textContent = String(balance);
  $("balance").title = won(balance);
}

export async function refreshBalance() {
  const { data } = await call("GET", "/v1/me/balance", { auth: token() });
  setBalance(data.balance);
}
