// The admin page: create a concert, set its waiting-room policy, watch the room's live figures and the box
// office (per date and for the concert), and cancel a date (after a visible confirmation).
// Uses only the public admin API with the token the admin types (kept in sessionStorage, this tab only).

import { call, command, showProblem, h, when } from "/assets/shared/api.js";

/** How often the live figures are read, and how many readings the chart keeps (5 minutes). */
const FIGURES_EVERY_MS = 2_000;
const CHART_POINTS = 150;
/** The admitted-per-minute rate is measured over this much history (or what there is of it). */
const RATE_WINDOW_MS = 60_000;

const $ = (id) => document.getElementById(id);
const hook = (name) => document.querySelector(`[data-test="${name}"]`);
const errorSlot = $("error-slot");
const session = window.sessionStorage;

let concertId = "";
let samples = []; // {at, waiting, active, admitted}
let figuresTimer = null;

function adminToken() {
  return session.getItem("admin-token") || "";
}

/** Shows a problem in plain words; on this page a refused token is the admin token, not a fan's sign-in. */
function showAdminProblem(problem) {
  showProblem(errorSlot, problem);
  if (problem.code === "UNAUTHORIZED") {
    errorSlot.querySelector(".error-text").textContent =
      "The admin token was refused. Type the service's ADMIN_TOKEN above and press “Use token”.";
  }
}

function action(fn) {
  return async (event) => {
    event?.preventDefault?.();
    errorSlot.replaceChildren();
    try {
      await fn(event);
    } catch (problem) {
      showAdminProblem(problem);
    }
  };
}

$("token-form").addEventListener("submit", action(async () => {
  session.setItem("admin-token", hook("admin-token").value.trim());
  await loadConcerts();
  if (concertId) await loadRoom();
}));

// ---- concerts -----------------------------------------------------------------------------------------------

async function loadConcerts(select) {
  const { data } = await call("GET", "/v1/concerts");
  const list = $("concert-select");
  const known = new Set([...list.options].map((o) => o.value));
  for (const c of data.concerts) {
    if (!known.has(c.concert_id)) list.append(h("option", { value: c.concert_id }, `${c.title} · ${c.venue}`));
  }
  if (select) {
    list.value = select;
    await chooseConcert(select);
  }
}

$("create-form").addEventListener("submit", action(async (event) => {
  const form = new FormData(event.target);
  const first = new Date(form.get("starts_at"));
  const count = Number(form.get("dates"));
  const dates = [...Array(count).keys()].map((i) => ({
    starts_at: new Date(first.getTime() + i * 86_400_000).toISOString(),
    seats: Number(form.get("seats")),
    price: Number(form.get("price")),
  }));
  const { data } = await call("POST", "/v1/admin/concerts", {
    auth: adminToken(),
    body: { title: form.get("title"), venue: form.get("venue"), dates },
  });
  $("created").textContent = `Created “${form.get("title")}” with ${data.dates.length} date(s).`;
  $("created").dataset.concertId = data.concert_id;
  $("created").hidden = false;
  await loadConcerts(data.concert_id);
}));

$("concert-select").addEventListener("change", action(async (event) => chooseConcert(event.target.value)));

async function chooseConcert(id) {
  concertId = id;
  samples = [];
  clearInterval(figuresTimer);
  $("policy-form").hidden = !id;
  $("live").hidden = !id;
  $("box-office").hidden = !id;
  $("policy-saved").hidden = true;
  $("sales-dates").replaceChildren();
  $("cancel-date-result").hidden = true;
  if (!id) return;
  await loadRoom();
  await refreshSales();
  figuresTimer = setInterval(
    () => Promise.all([refreshFigures(), refreshSales()]).catch(showAdminProblem),
    FIGURES_EVERY_MS,
  );
}

// ---- policy -------------------------------------------------------------------------------------------------

const POLICY_FIELDS = ["max_active_users", "admit_per_interval", "interval_seconds", "active_seconds", "hold_seconds", "claim_seconds"];

async function loadRoom() {
  const view = await readRoom();
  const form = $("policy-form");
  for (const field of POLICY_FIELDS) form.elements[field].value = view[field] ?? "";
  // `claim_seconds` appears only on servers that know it; sending it to others would be ignored.
  $("claim-label").hidden = !("claim_seconds" in view);
  form.elements.opens_at.value = view.opens_at ? localInput(new Date(view.opens_at)) : "";
  form.elements.opens_at.dataset.loaded = form.elements.opens_at.value;
  form.elements.join_proof_bits.value = view.join_proof_bits ?? 0;
  showFigures(view);
}

/** A time as a datetime-local input's value, in the admin's own time zone. */
function localInput(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 19);
}

$("policy-form").addEventListener("submit", action(async (event) => {
  const form = event.target;
  const policy = {};
  for (const field of POLICY_FIELDS) {
    const text = form.elements[field].value.trim();
    if (field === "claim_seconds" && $("claim-label").hidden) continue;
    policy[field] = text === "" ? null : Number(text);
  }
  // The pre-queue's opening (null: none) and the proof of work; both keep their value when not sent.
  // Sent only when edited: the field shows whole seconds, and an opened room refuses any other value.
  const opensAt = form.elements.opens_at.value;
  if (opensAt !== form.elements.opens_at.dataset.loaded) policy.opens_at = opensAt ? new Date(opensAt).toISOString() : null;
  policy.join_proof_bits = Number(form.elements.join_proof_bits.value || 0);
  $("policy-saved").hidden = true;
  const { data } = await call("PUT", `/v1/admin/concerts/${concertId}/waiting-room`, { auth: adminToken(), body: policy });
  $("policy-saved").hidden = false;
  form.elements.opens_at.dataset.loaded = form.elements.opens_at.value;
  showFigures(data);
}));

// ---- live figures -------------------------------------------------------------------------------------------

async function readRoom() {
  const { data } = await call("GET", `/v1/admin/concerts/${concertId}/waiting-room`, { auth: adminToken() });
  return data;
}

async function refreshFigures() {
  if (!concertId) return;
  showFigures(await readRoom());
}

function showFigures(view) {
  const now = Date.now();
  samples.push({ at: now, waiting: view.waiting, active: view.active, admitted: view.admitted_total });
  if (samples.length > CHART_POINTS) samples.shift();
  $("fig-waiting").textContent = String(view.waiting);
  $("fig-active").textContent = String(view.active);
  $("fig-admitted").textContent = String(view.admitted_total);
  $("fig-abandoned").textContent = view.abandoned_total === undefined ? "—" : String(view.abandoned_total);
  $("fig-rate").textContent = admittedPerMinute(now);
  $("fig-pre-queued").textContent = view.pre_queued === undefined ? "—" : String(view.pre_queued);
  $("fig-opening").textContent = view.draw
    ? `drawn ${new Date(view.draw.drawn_at).toLocaleTimeString()}: ${view.draw.places} places in random order`
    : view.opens_at ? `opens ${new Date(view.opens_at).toLocaleString()}` : "open";
  $("fig-opening").title = view.draw ? view.draw.method : "";
  $("live-updated").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  drawChart();
}

/** Admissions over the last minute of readings, scaled to a minute; "—" until 5 s of history exist. */
function admittedPerMinute(now) {
  const base = samples.find((s) => now - s.at <= RATE_WINDOW_MS);
  const last = samples[samples.length - 1];
  if (!base || last.at - base.at < 5_000) return "—";
  return String(Math.round(((last.admitted - base.admitted) * 60_000) / (last.at - base.at)));
}

function drawChart() {
  const width = 600;
  const height = 180;
  const top = Math.max(5, ...samples.map((s) => Math.max(s.waiting, s.active)));
  // The readings fill the width; once the chart is full, the oldest scroll off the left.
  const x = (i) => (samples.length < 2 ? width : (i * width) / (samples.length - 1));
  const y = (v) => height - 8 - ((height - 16) * v) / top;
  const line = (key) => samples.map((s, i) => `${x(i).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ");
  $("line-waiting").setAttribute("points", line("waiting"));
  $("line-active").setAttribute("points", line("active"));
  $("chart-scale").textContent = `top of chart: ${top}`;
}

// ---- box office and cancelling a date ------------------------------------------------------------------------

/** The figures shown per date and for the concert, in this order (each cell's hook is `sales-<name>`). */
const SALES_FIGURES = ["status", "sold", "held", "available", "revenue", "refunded"];

async function refreshSales() {
  if (!concertId) return;
  const shown = concertId;
  const { data } = await call("GET", `/v1/admin/concerts/${shown}/sales`, { auth: adminToken() });
  if (shown !== concertId) return; // another concert was chosen meanwhile
  showSales(data);
}

function showSales(sales) {
  const body = $("sales-dates");
  const rows = new Map([...body.querySelectorAll('[data-test="sales-date"]')].map((row) => [row.dataset.dateId, row]));
  const dates = [...sales.dates].sort((a, b) => a.starts_at.localeCompare(b.starts_at));
  const totals = { sold: 0, held: 0, available: 0 };
  for (const date of dates) {
    let row = rows.get(date.date_id);
    if (!row) {
      row = dateRow(date);
      body.append(row);
    }
    fillFigures(row, date);
    row.dataset.status = date.status;
    row.className = date.status;
    showDateAction(row, date);
    for (const key of Object.keys(totals)) totals[key] += date[key];
  }
  const open = dates.filter((d) => d.status === "OPEN").length;
  fillFigures($("sales-concert"), {
    ...totals,
    status: `${open} of ${dates.length} open`,
    revenue: sales.revenue,
    refunded: sales.refunded,
  });
  $("sales-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

/** "Mon, Dec 14, 08:00 PM": a date in a table cell, in the admin's own time zone. */
function shortWhen(iso) {
  return new Date(iso).toLocaleString(undefined, { weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A new table row for a date; its figures are filled by `fillFigures`, its action by `showDateAction`. */
function dateRow(date) {
  return h(
    "tr",
    { dataset: { test: "sales-date", dateId: date.date_id } },
    h("td", { title: date.date_id }, shortWhen(date.starts_at), h("div", { class: "muted small" }, `${date.total_seats} seats`)),
    SALES_FIGURES.map((name) => h("td", { dataset: { test: `sales-${name}` } }, "—")),
    h("td", { class: "date-action" }),
  );
}

/** Fills a row's cells: the text for a person, the plain number (or status) in `data-value` for scripts. */
function fillFigures(row, figures) {
  for (const name of SALES_FIGURES) {
    const cell = row.querySelector(`[data-test="sales-${name}"]`);
    const value = figures[name];
    const text = typeof value === "number" ? value.toLocaleString("en-US") : String(value);
    if (cell.textContent !== text) cell.textContent = text;
    cell.dataset.value = String(value);
  }
}

/** The date's action cell: "Cancel this date" while it is open, unless its confirmation is on screen. */
function showDateAction(row, date) {
  const cell = row.querySelector(".date-action");
  if (cell.dataset.state === "confirming" || cell.dataset.state === "cancelling") return;
  const state = date.status === "OPEN" ? "open" : "closed";
  if (cell.dataset.state === state) return;
  cell.dataset.state = state;
  cell.replaceChildren(
    state === "open"
      ? h("button", { type: "button", class: "secondary", dataset: { test: "cancel-date-button" }, onclick: () => askToCancel(row, date) }, "Cancel this date")
      : h("span", { class: "muted" }, date.status === "CANCELED" ? "cancelled" : "started"),
  );
}

/**
 * The second step: a row under the date says what cancelling does, with a visible confirm button, or keep
 * the date.
 */
function askToCancel(row, date) {
  const cell = row.querySelector(".date-action");
  const sold = Number(row.querySelector('[data-test="sales-sold"]').dataset.value || date.sold);
  const held = Number(row.querySelector('[data-test="sales-held"]').dataset.value || date.held);
  cell.dataset.state = "confirming";
  cell.replaceChildren(h("span", { class: "muted" }, "confirm below"));
  const keep = () => {
    confirm.remove();
    delete cell.dataset.state;
    showDateAction(row, date);
  };
  const confirm = h(
    "tr",
    { class: "confirm-row", dataset: { test: "cancel-date-confirm", confirmFor: date.date_id } },
    h(
      "td",
      { colspan: "8" },
      h("p", {},
        `Cancel ${when(date.starts_at)}? Its ${sold} sold ticket(s) will be refunded to their buyers, its ${held} ` +
        "hold(s) released, and it can no longer be booked. This cannot be undone."),
      h("button", { type: "button", class: "danger", dataset: { test: "confirm-cancel-date" }, onclick: action(() => cancelDate(row, date, confirm)) }, "Yes, cancel this date"),
      h("button", { type: "button", class: "link", dataset: { test: "keep-date" }, onclick: keep }, "Keep it"),
    ),
  );
  row.after(confirm);
}

/** Cancels the date through the log and says what it did; the figures then show the refunds. */
async function cancelDate(row, date, confirm) {
  const cell = row.querySelector(".date-action");
  const result = $("cancel-date-result");
  result.hidden = true;
  confirm.remove();
  cell.dataset.state = "cancelling";
  cell.replaceChildren(h("span", { class: "muted" }, "Cancelling…"));
  try {
    const done = await command("POST", `/v1/admin/dates/${date.date_id}/cancel`, { auth: adminToken() });
    result.textContent =
      `Cancelled ${when(date.starts_at)}: ${done.reservations_refunded} ticket(s) refunded, ` +
      `${done.holds_released} hold(s) released.`;
    result.dataset.dateId = date.date_id;
    result.dataset.reservationsRefunded = String(done.reservations_refunded);
    result.dataset.holdsReleased = String(done.holds_released);
    result.hidden = false;
  } finally {
    // Whatever the outcome, show the date as it stands now (the action's problem goes to the error slot).
    delete cell.dataset.state;
    await refreshSales().catch(() => {});
    if (!cell.dataset.state) showDateAction(row, date);
  }
}

// ---- start --------------------------------------------------------------------------------------------------

(function start() {
  const soon = new Date(Date.now() + 7 * 86_400_000);
  soon.setMinutes(0, 0, 0);
  hook("concert-starts-at").value = new Date(soon.getTime() - soon.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  hook("admin-token").value = adminToken();
  loadConcerts().catch(showAdminProblem);
})();
