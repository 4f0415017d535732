#!/usr/bin/env bash
# Install the system packages the live test servers need (Debian 12, run as root).
#
# - PostgreSQL 15 + PostGIS 3: the pgstac database behind the test STAC API
#   (rgb_assets_tests/servers/pgstac.py runs its own throwaway cluster as the `postgres` user).
# - chromium: browser for the UI test suite.
# - docker.io, docker-compose, debootstrap: the Compose stack test (rgb_assets_tests/deploy/)
#   builds the image from a debootstrapped Debian base (nothing can be pulled) and runs the
#   stack; the test starts its own dockerd when none is running.
#
# Idempotent: does nothing when every package is already installed. Never enables or starts the
# system PostgreSQL service; tests start their own cluster on a free port.
set -euo pipefail

PACKAGES=(
    postgresql
    postgresql-15-postgis-3
    postgresql-15-postgis-3-scripts
    chromium
    docker.io
    docker-compose
    debootstrap
)

if [[ ${EUID} -ne 0 ]]; then
    echo "install-system.sh: must run as root" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)
    if [[ ${status} != "install ok installed" ]]; then
        missing+=("${pkg}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system.sh: all packages already installed: ${PACKAGES[*]}"
    exit 0
fi
echo "install-system.sh: installing ${missing[*]}"

# Keep maintainer scripts from starting services (the Debian postgresql package otherwise starts
# the default 15/main cluster on port 5432). Only add a policy-rc.d if none exists, and remove
# only the one we added.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 755 "${policy}"
    added_policy=1
fi
cleanup() {
    if [[ ${added_policy} -eq 1 ]]; then
        rm -f "${policy}"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}"

# With systemd the units may still have been enabled; the tests never use them (the stack test
# starts dockerd itself when it is not running).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
fi

test -x /usr/lib/postgresql/15/bin/initdb
test -f /usr/share/postgresql/15/extension/postgis.control
test -x /usr/bin/docker && test -x /usr/sbin/dockerd && test -x /usr/bin/docker-compose
test -x /usr/sbin/debootstrap
echo "install-system.sh: done"
