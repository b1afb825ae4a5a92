#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, pg_ctl, postgres) available: Debian's packages,
# installed with apt-get when they are missing. Nothing is started here and no system service is
# used: tests/helpers/postgres.py creates a throwaway cluster (initdb in a temporary folder, run by
# an unprivileged user on a free loopback port) and removes it afterwards.
# Prints the folder holding the server binaries. Called by the PostgreSQL tests and by .ci/run.
set -euo pipefail

bindir() {
    # Debian keeps the server binaries per major version under /usr/lib/postgresql/<v>/bin.
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$found" && -x "$found/initdb" && -x "$found/pg_ctl" ]]; then
        echo "$found"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

if [[ -z "$(bindir)" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "ci_postgres: PostgreSQL is not installed and this user can neither run apt-get" \
            "nor sudo: install the Debian package 'postgresql' (apt-get install -y postgresql)" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null; then
        echo "ci_postgres: PostgreSQL is not installed and apt-get is not available:" \
            "install PostgreSQL's server (initdb, pg_ctl) with this system's package manager" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq >&2
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2
fi

found=$(bindir)
if [[ -z "$found" ]]; then
    echo "ci_postgres: apt-get installed postgresql but initdb/pg_ctl are not found" >&2
    exit 1
fi
echo "$found"
