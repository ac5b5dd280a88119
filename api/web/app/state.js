// What the page knows, in one place that every view reads and writes: the signed-in person, the chosen concert,
// the place in its waiting room, the booking under way. Views share it through here instead of asking each other,
// so they import in one direction only.

/** An element of index.html by its id. */
export const $ = (id) => document.getElementById(id);
export const store = window.localStorage;

/** What the page knows; the access token and queue tokens live in localStorage so a reload keeps them. */
export const state = {
  user: JSON.parse(store.getItem("user") || "null"), // {user_id, access_token, name}
  concerts: [],
  concertId: store.getItem("concert"),
  queueToken: null,
  place: null, // the last status document
  firstPosition: null,
  stopWatching: null,
  dates: [],
  dateId: null,
  seats: new Map(), // seat_no -> element
  selectedSeat: null,
  holds: [], // the live holds on this concert, oldest first: [{hold_id, date_id, seat_no, price, expires_at}]
  reservations: [],
  seatTimer: null,
};

/** The signed-in person's access token, if any. */
export function token() {
  return state.user?.access_token;
}
