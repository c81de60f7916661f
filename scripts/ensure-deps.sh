#!/usr/bin/env bash
# Installs the Debian packages named on the command line when any is missing.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "kanal: missing packages ${missing[*]} and not root: install them first" >&2
        exit 1
    fi
    echo "kanal: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Daemons (dockerd, containerd, ovs) must not start in the root namespace on
    # install: tests start their own, privately. A policy-rc.d that says no, unless
    # the machine already has one.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
