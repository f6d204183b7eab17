#!/usr/bin/env bash
# Installs the system packages the test suite needs on a Debian machine (run as root).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail

PACKAGES=(docker.io openssh-server openssh-client postgresql chromium iproute2 busybox-static util-linux procps curl caddy docker-registry apache2-utils)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Keep the distribution's services from starting on install: the tests start what they need.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
echo "install-test-deps: system packages ready"
