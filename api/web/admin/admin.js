// The admin page: create a concert, set its waiting-room policy, and watch the room's live figures.
// Uses only the public admin API with the token the admin types (kept in sessionStorage, this tab only).

import { call, showProblem, h } from "/assets/shared/api.js";

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

function action(fn) {
  return async (event) => {
    event?.preventDefault?.();
    errorSlot.replaceChildren();
    try {
      await fn(event);
    } catch (problem) {
      showProblem(errorSlot, problem);
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
  $("policy-saved").hidden = true;
  if (!id) return;
  await loadRoom();
  figuresTimer = setInterval(() => refreshFigures().catch((problem) => showProblem(errorSlot, problem)), FIGURES_EVERY_MS);
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

// ---- start --------------------------------------------------------------------------------------------------

(function start() {
  const soon = new Date(Date.now() + 7 * 86_400_000);
  soon.setMinutes(0, 0, 0);
  hook("concert-starts-at").value = new Date(soon.getTime() - soon.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  hook("admin-token").value = adminToken();
  loadConcerts().catch((problem) => showProblem(errorSlot, problem));
})();
