// Running what a person does (a click, a submit) and showing what went wrong: every view's buttons go through
// `action`, so a problem shows the same way, in the page's one error slot, whichever view it came from.

import { showProblem } from "/assets/shared/api.js";
import { $ } from "/assets/app/state.js";

export const errorSlot = $("error-slot");

/**
 * What to do when the server no longer knows the person (`UNAUTHORIZED`): sign out. Signing out clears every view,
 * so it lives above them all (app.js hands it in here) rather than here below them.
 */
let signOut = () => {};

export function whenUnauthorized(fn) {
  signOut = fn;
}

/** Runs a person's action: clears the last problem first, shows the new one if the action fails. */
export function action(fn) {
  return async (event) => {
    event?.preventDefault?.();
    errorSlot.replaceChildren();
    const button = event?.submitter || (event?.currentTarget instanceof HTMLButtonElement ? event.currentTarget : null);
    if (button) button.classList.add("busy");
    try {
      await fn(event);
    } catch (problem) {
      if (problem.code === "UNAUTHORIZED") signOut();
      showProblem(errorSlot, problem);
    } finally {
      if (button) button.classList.remove("busy");
    }
  };
}
