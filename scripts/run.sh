#!/usr/bin/env bash
# `make run`: migrate, start the sandbox upstreams, load demo data, start the task worker and the
# web server, print a login. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WEB_PORT=${WEB_PORT:-8000}
SANDBOX_PORT=${SANDBOX_PORT:-8001}
export SANDBOX_URL=${SANDBOX_URL:-http://127.0.0.1:$SANDBOX_PORT}
mkdir -p var/log var/mail
# The demo users' "job finished" e-mails land in var/mail/, one file each, with links to this port.
export EMAIL_BACKEND=${EMAIL_BACKEND:-django.core.mail.backends.filebased.EmailBackend}
export EMAIL_FILE_PATH=${EMAIL_FILE_PATH:-$PWD/var/mail}
export BACKOFFICE_URL=${BACKOFFICE_URL:-http://127.0.0.1:$WEB_PORT}

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "Stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

$PY manage.py migrate --noinput -v0
$PY manage.py compilemessages --ignore=.venv -v0 2>/dev/null || true

# The sandbox runs unless every upstream is pointed elsewhere (see README, "Real upstreams").
if [ -z "${PAYNET_BASE_URL:-}" ] || [ -z "${WISECP_API_URL:-}" ] || [ -z "${PAYOFIN_BASE_URL:-}" ]; then
  $PY manage.py sandbox --port "$SANDBOX_PORT" >var/log/sandbox.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do
    curl -fsS "$SANDBOX_URL/_sandbox/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "$SANDBOX_URL/_sandbox/health" >/dev/null || { echo "sandbox did not start; see var/log/sandbox.log"; exit 1; }
  echo "Sandbox upstreams at $SANDBOX_URL"
  # Volume for the demo: 25 more variable-price subscriptions with 20 waiting records each.
  curl -fsS -X POST "$SANDBOX_URL/_sandbox/state/paynet" -H 'Content-Type: application/json' \
    -d '{"command": "seed_bulk", "subscriptions": 25, "records_per_subscription": 20}' >/dev/null
fi

echo "Loading demo data from the upstreams..."
for upstream in paynet wisecp payofin; do
  $PY manage.py sync "$upstream" || echo "  ($upstream sync failed; the admin still starts)"
done
$PY manage.py billqueries_demo || true

# Runs a command again whenever it exits, as systemd's Restart=always does in production (README,
# "Production"). The worker waits out a database outage by itself; this catches the rest (a
# crash, an out-of-memory kill). TERM stops the command and the loop.
supervise() {
  local log=$1; shift
  local child=""
  trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait 2>/dev/null; exit 0' TERM INT
  while true; do
    "$@" >>"$log" 2>&1 &
    child=$!
    status=0; wait "$child" || status=$?
    echo "$(date '+%F %T') run.sh: exited ($status); starting it again in 2 s" >>"$log"
    sleep 2
  done
}

# DEBUG off: a worker keeps no query log and shows no debug pages (it serves none).
: >var/log/worker.log
supervise var/log/worker.log env DJANGO_DEBUG=false $PY manage.py db_worker --interval 0.5 \
  --no-reload --heartbeat-file var/worker.alive &
pids+=($!)
$PY manage.py jobs_sweep --schedule >/dev/null
$PY manage.py sync --schedule >/dev/null

echo
echo "================================================================"
echo " Finance back office: http://127.0.0.1:$WEB_PORT/"
$PY manage.py bootstrap_admin --demo-users
echo " (passwords are new on every start; logs in var/log/, e-mails in var/mail/)"
echo "================================================================"
echo
$PY manage.py runserver "127.0.0.1:$WEB_PORT" --noreload
