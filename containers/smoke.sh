#!/usr/bin/env bash
# The compose smoke test: docker-compose.yml as shipped, with the local images of containers/compose.local.yml,
# brought up through a Docker API (podman's socket here, `./dev podman start`; or a Docker engine), a
# booking walked through with curl (README.md "Calling it"), the workers scaled to 3 and each checked to own
# command partitions, then everything brought down, also on failure. ./dev test runs it; by hand:
#   ./dev images && ./dev podman start && containers/smoke.sh
# Logs of a failed run are kept in .dev/smoke/<project>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf 'smoke: %s\n' "$*" >&2; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

export DOCKER_HOST="${DOCKER_HOST:-unix://$ROOT/.dev/podman.sock}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/containers.conf}"
case "$DOCKER_HOST" in
  unix://*) curl -sf --unix-socket "${DOCKER_HOST#unix://}" http://d/version >/dev/null \
              || fail "no Docker API answers on $DOCKER_HOST (./dev podman start)" ;;
esac
for tool in docker-compose curl jq; do command -v "$tool" >/dev/null || fail "$tool is required"; done

# A project, a port and secrets of this run's own, so that it never meets a running stack or another run.
PROJECT="concert-smoke-$$"
port=$((20000 + RANDOM % 20000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
export API_PORT=$port
TOKEN_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'); export TOKEN_SECRET
ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'); export ADMIN_TOKEN
COMPOSE=(docker-compose -p "$PROJECT" -f docker-compose.yml -f containers/compose.local.yml)
LOGS="$ROOT/.dev/smoke/$PROJECT"
API="http://127.0.0.1:$API_PORT"
HEALTH_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$HEALTH_PID" ]; then kill "$HEALTH_PID" 2>/dev/null || true; wait "$HEALTH_PID" 2>/dev/null || true; fi
  if [ "$rc" != 0 ]; then
    mkdir -p "$LOGS"
    "${COMPOSE[@]}" ps >"$LOGS/ps.txt" 2>&1 || true
    "${COMPOSE[@]}" logs --no-color >"$LOGS/compose.log" 2>&1 || true
    say "logs of the failed run: $LOGS/"
  fi
  say "bringing $PROJECT down"
  "${COMPOSE[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || say "docker-compose down failed; see docker-compose -p $PROJECT ps"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# podman runs a container's health check from a systemd timer; with no systemd (this machine, most CI
# containers) the check never runs and `condition: service_healthy` waits forever. So while the stack is up
# this loop runs every container's check itself, as the timer would (every 2 s; a container without a
# check answers an error, ignored).
if command -v podman >/dev/null && curl -sf --unix-socket "${DOCKER_HOST#unix://}" http://d/version 2>/dev/null \
    | jq -e '.Components[]? | select(.Name | test("Podman"))' >/dev/null; then
  (
    while :; do
      for c in $(podman ps --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}' 2>/dev/null); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) &
  HEALTH_PID=$!
fi

started=$SECONDS
say "docker-compose up ($PROJECT, api on port $API_PORT)"
"${COMPOSE[@]}" up -d --no-build >&2
for _ in $(seq 1 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/readyz")" = 200 ] && break
  sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$API/readyz")" = 200 ] || fail "the api did not become ready"
say "up and ready in $((SECONDS - started)) s"
workers=$("${COMPOSE[@]}" ps -q worker | wc -l)
[ "$workers" = 2 ] || fail "expected 2 workers (deploy.replicas), found $workers"

# JSON from a call, failing on an unexpected status: call EXPECTED_STATUS curl-args...
call() {
  local want="$1" out status; shift
  out=$(curl -s -w '\n%{http_code}' "$@") || fail "curl $*"
  status=${out##*$'\n'}; out=${out%$'\n'*}
  [ "$status" = "$want" ] || fail "$* answered $status, not $want: $out"
  printf '%s' "$out"
}
JSON='content-type: application/json'
ADMIN="Authorization: Bearer $ADMIN_TOKEN"

# A booking walked through as in README.md "Calling it: a whole booking with curl".
say "walking through a booking"
CONCERT=$(call 201 -X POST "$API/v1/admin/concerts" -H "$ADMIN" -H "$JSON" \
  -d '{"title":"Smoke Live","venue":"Container Hall","dates":[{"starts_at":"2030-03-01T19:00:00Z","price":50000}]}')
CONCERT_ID=$(jq -r .concert_id <<<"$CONCERT"); DATE_ID=$(jq -r '.dates[0].date_id' <<<"$CONCERT")
call 200 -X PUT "$API/v1/admin/concerts/$CONCERT_ID/waiting-room" -H "$ADMIN" -H "$JSON" \
  -d '{"max_active_users":100,"active_seconds":600,"hold_seconds":300}' >/dev/null
# Signs NAME up, charges 100000 (twice with one Idempotency-Key: credited once), joins the waiting room,
# waits for ACTIVE, holds SEAT and pays for it; checks the balance and the reservation.
book() {
  local name="$1" seat="$2" token auth balance qt status hold hold_id paid seats
  token=$(call 201 -X POST "$API/v1/users" -H "$JSON" -d "{\"name\":\"$name\"}" | jq -r .access_token)
  auth="Authorization: Bearer $token"
  for _ in 1 2; do
    balance=$(call 200 -X POST "$API/v1/me/balance/charges" -H "$auth" -H 'Idempotency-Key: top-up-1' -H "$JSON" \
      -d '{"amount":100000}' | jq -r .balance)
    [ "$balance" = 100000 ] || fail "$name's balance after charging 100000 (twice, one key): $balance"
  done
  qt=$(call 201 -X POST "$API/v1/concerts/$CONCERT_ID/queue" -H "$auth" -H 'Prefer: wait=10' | jq -r .queue_token)
  status=""
  for _ in $(seq 1 60); do
    status=$(call 200 "$API/v1/queue/status" -H "X-Queue-Token: $qt" | jq -r .status)
    [ "$status" = ACTIVE ] && break
    sleep 0.5
  done
  [ "$status" = ACTIVE ] || fail "$name's queue place is $status, not ACTIVE, after 30 s"
  hold=$(call 200 -X POST "$API/v1/holds" -H "$auth" -H "X-Queue-Token: $qt" -H 'Prefer: wait=10' -H "$JSON" \
    -d "{\"date_id\":\"$DATE_ID\",\"seat_no\":$seat}")
  [ "$(jq -r .status <<<"$hold")" = SUCCEEDED ] || fail "$name's hold: $hold"
  hold_id=$(jq -r .result.hold_id <<<"$hold")
  paid=$(call 200 -X POST "$API/v1/payments" -H "$auth" -H "X-Queue-Token: $qt" -H 'Prefer: wait=10' -H "$JSON" \
    -d "{\"hold_ids\":[\"$hold_id\"]}")
  [ "$(jq -r .status <<<"$paid")" = SUCCEEDED ] || fail "$name's payment: $paid"
  balance=$(call 200 "$API/v1/me/balance" -H "$auth" | jq -r .balance)
  [ "$balance" = 50000 ] || fail "$name's balance after paying 50000 of 100000: $balance"
  seats=$(call 200 "$API/v1/me/reservations" -H "$auth" | jq -c '[.. | objects | select(has("seat_no")) | .seat_no] | unique')
  [ "$seats" = "[$seat]" ] || fail "$name's reservations: seats $seats, not [$seat]"
  say "$name booked seat $seat and paid 50000 once"
}
book Mina 7

# Three workers: the group rebalances and every worker owns command partitions (8 join and 16 booking
# partitions in the compose file, so none is left standing by). Each logs "partitions assigned" on a new
# assignment and "partitions revoked" when it gives one up; its last such line must be an assignment.
say "scaling the workers to 3"
"${COMPOSE[@]}" up -d --no-build --no-recreate --no-deps --scale worker=3 worker >&2
# Per worker container (compose's log prefix: worker_1 with compose 1.29, worker-1 with v2), the number of
# partitions its last "partitions assigned" line names, or "none" when its last such line is a revoke.
owned_partitions() {
  "${COMPOSE[@]}" logs --no-color worker 2>/dev/null | awk -F' [|] ' '
    /"partitions (assigned|revoked)/ {
      name = $1; gsub(/ /, "", name)
      if ($0 ~ /"partitions assigned/) { n = gsub(/\[[0-9]+\]/, "&"); last[name] = n } else last[name] = "none"
    }
    END { for (w in last) printf "%s=%s\n", w, last[w] }' | sort
}
owned=""; ok=no
for _ in $(seq 1 90); do
  owned=$(owned_partitions | tr '\n' ' ')
  if [ "$(owned_partitions | grep -c '=[1-9]')" = 3 ] && [ "$("${COMPOSE[@]}" ps -q worker | wc -l)" = 3 ]; then
    ok=yes; break
  fi
  sleep 1
done
[ "$ok" = yes ] || fail "not every one of 3 workers owns partitions after 90 s:$owned"
say "3 workers, partitions owned:$owned"

# Still booking after the rebalance.
book Joon 8
say "passed in $((SECONDS - started)) s"
