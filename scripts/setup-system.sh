#!/usr/bin/env bash
# The system pieces the full test suite uses that npm cannot install (npm run setup:system; .ci/run
# runs it too): a Vulkan driver for WebGPU in Node and Deno (Mesa's lavapipe, a CPU implementation),
# and Chromium for the browser tests. Debian: bookworm's own Mesa (22.3) lacks features Dawn
# requires, so it comes from bookworm-backports (25.x). Needs root (or sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup:system: no apt-get here; install a Vulkan driver (Mesa's lavapipe: mesa-vulkan-drivers 25+) and Chromium with your package manager" >&2
  exit 1
fi
. /etc/os-release

updated=""
update() { [ -n "$updated" ] || $SUDO apt-get update -qq; updated=1; }

if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]'; then
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    if [ ! -f /etc/apt/sources.list.d/backports.sources ]; then
      $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    update
    $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    update
    $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
fi

# headless Chromium for test/runtimes/browser.test.ts and threads.test.ts (driven by playwright-core)
if ! command -v chromium >/dev/null 2>&1; then
  update
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "setup:system: $(dpkg-query -W -f='mesa-vulkan-drivers ${Version}' mesa-vulkan-drivers), $(chromium --version 2>/dev/null || echo 'chromium ?')"
