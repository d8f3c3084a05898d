#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need from the system,
# then format check, clippy with warnings denied, and every test (nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# What to stop when the script ends, however it ends.
exit_steps=()
run_exit_steps() { for step in "${exit_steps[@]}"; do eval "$step" || true; done; }
trap run_exit_steps EXIT

apt_updated=0
need_package() { # need_package COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  log "installing $*"
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# R checks the canary judge's statistics against wilcox.test.
need_package Rscript r-base-core
# Prometheus: the canary's prometheus metric source is tested against a real one.
need_package prometheus prometheus
# Headless Chromium and its WebDriver: the web UI's browser tests (crates/gennaker/tests/ui_browser.rs).
need_package chromium chromium chromium-driver
need_package chromedriver chromium-driver
# Docker registry (distribution v2): docker triggers poll a real one.
need_package docker-registry docker-registry
# PostgreSQL: the store and server suites run on it as well as SQLite.
need_package psql postgresql-client
pg_url="${GENNAKER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if ! psql "$pg_url" -qtAc 'select 1' >/dev/null 2>&1; then
  log "no PostgreSQL at $pg_url; starting a throw-away one"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_package __none__ postgresql
  fi
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg_dir=$(mktemp -d /tmp/gennaker-pg.XXXXXX)
  chown postgres "$pg_dir" 2>/dev/null || true
  run_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
  run_pg "$pg_bin/initdb -D $pg_dir/data -U postgres -A trust >/dev/null"
  run_pg "$pg_bin/pg_ctl -D $pg_dir/data -o '-p 55432 -k $pg_dir -c listen_addresses=127.0.0.1' -l $pg_dir/log -w start >/dev/null"
  run_pg "$pg_bin/createdb -h 127.0.0.1 -p 55432 -U postgres test"
  exit_steps+=('run_pg "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop >/dev/null"')
  pg_url="postgres://postgres@127.0.0.1:55432/test"
fi
export GENNAKER_TEST_POSTGRES_URL="$pg_url"

# Kubernetes: the provider's tests run on a real control plane (kube-apiserver,
# controller-manager, scheduler; no kubelet) when ../shared/k8s is beside the repo.
k8s_dir="$(dirname "$PWD")/shared/k8s"
if [ -z "${GENNAKER_TEST_KUBECONFIG:-}" ] && [ -x "$k8s_dir/start-cluster" ]; then
  need_package etcd etcd-server
  k8s_run=$(mktemp -d /tmp/gennaker-k8s.XXXXXX)
  log "starting the Kubernetes test control plane in $k8s_run"
  if "$k8s_dir/start-cluster" "$k8s_run" >/dev/null; then
    exit_steps+=("\"$k8s_dir/stop-cluster\" \"$k8s_run\" >/dev/null")
    export GENNAKER_TEST_KUBECONFIG="$k8s_run/kubeconfig"
  else
    log "the Kubernetes control plane did not start; its tests are skipped"
  fi
fi

# A real SMTP server for the email notification tests: Python's aiosmtpd (PyPI).
need_package python3 python3 python3-pip
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  log "installing aiosmtpd"
  python3 -m pip install --quiet aiosmtpd
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests (PostgreSQL at $GENNAKER_TEST_POSTGRES_URL)"
cargo nextest run --workspace --locked --no-fail-fast "$@"
