#!/usr/bin/env python3
"""The broker's cost on a running stack (docs/BROKER.md): the broker's CPU while the stack is idle, and the
latency of one hold at a time on that idle stack (submit with `Prefer: wait` to outcome, then released).

    python3 docs/broker_probe.py --broker-pid PID [--url http://127.0.0.1:8080] [--holds 40] [--idle 20]

Standard library only. Needs the admin token of the stack (ADMIN_TOKEN, default dev-admin-token).
"""

import argparse
import json
import os
import statistics
import time
import urllib.error
import urllib.request
import uuid

TICKS = os.sysconf("SC_CLK_TCK")


def call(url, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if text else None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--admin-token", default=os.environ.get("ADMIN_TOKEN", "dev-admin-token"))
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--holds", type=int, default=40)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    args = ap.parse_args()
    url = args.url
    admin = {"Authorization": f"Bearer {args.admin_token}"}

    # Idle first: nothing submitted for a few seconds, then the broker's CPU over --idle seconds.
    time.sleep(3)
    cpu0, t0 = cpu_seconds(args.broker_pid), time.monotonic()
    time.sleep(args.idle)
    idle_cpu = (cpu_seconds(args.broker_pid) - cpu0) / (time.monotonic() - t0)

    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    status, concert = call(url, "POST", "/v1/admin/concerts", {
        "title": f"probe {uuid.uuid4().hex[:8]}", "venue": "probe",
        "dates": [{"starts_at": starts, "seats": 1000, "price": 1000}]}, admin)
    assert status == 201, (status, concert)
    concert_id, date_id = concert["concert_id"], concert["dates"][0]["date_id"]
    status, body = call(url, "PUT", f"/v1/admin/concerts/{concert_id}/waiting-room", {
        "max_active_users": 1000, "active_seconds": 3600, "hold_seconds": 300}, admin)
    assert status in (200, 204), (status, body)
    status, user = call(url, "POST", "/v1/users", {"name": "probe"})
    assert status == 201, (status, user)
    auth = {"Authorization": f"Bearer {user['access_token']}"}
    status, joined = call(url, "POST", f"/v1/concerts/{concert_id}/queue", None,
                          {**auth, "Prefer": "wait=10"})
    assert status in (200, 201), (status, joined)
    token = joined["queue_token"]
    for _ in range(100):
        status, st = call(url, "GET", "/v1/queue/status", None, {"X-Queue-Token": token})
        if st and st.get("status") == "ACTIVE":
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"never admitted: {st}")
    user_h = {**auth, "X-Queue-Token": token, "Prefer": "wait=10"}

    lat = []
    for seat in range(1, args.holds + 1):
        time.sleep(0.25)  # idle between holds: each one finds the consumers in an empty long-poll
        t = time.monotonic()
        status, hold = call(url, "POST", "/v1/holds", {"date_id": date_id, "seat_no": seat}, user_h)
        lat.append((time.monotonic() - t) * 1000)
        assert status == 200, (status, hold)
        status, body = call(url, "DELETE", f"/v1/holds/{hold['result']['hold_id']}", None, user_h)
        assert status == 200, (status, body)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"probe: broker_idle_cpu={idle_cpu * 100:.1f}% idle_hold_ms p50={p(0.5):.1f} "
          f"p90={p(0.9):.1f} max={lat[-1]:.1f} mean={statistics.mean(lat):.1f} n={len(lat)}")


if __name__ == "__main__":
    main()
