#!/usr/bin/env bash
# Makes sure this machine has a Vulkan loader and a Vulkan driver, which onnxruntime-node's bundled WebGPU
# execution provider (Dawn) needs. With no GPU, Mesa's software driver (lavapipe) does: the WebGPU tests run on it.
#
# Debian 12 (bookworm): Mesa 22.3's lavapipe is refused by Dawn (it lacks shaderUniform*ArrayDynamicIndexing),
# so the packages come from bookworm-backports (Mesa 25.x); this script adds that apt source when it is missing.
# Other Debian/Ubuntu releases: the packages from the release itself.
#
# Idempotent: does nothing when the packages are there (and, on bookworm, new enough). Needs root or password-less
# sudo and apt-get; otherwise it prints a "skipping" line and exits 0 (the WebGPU tests then say what is missing).
# Packages: libvulkan1 (the loader), mesa-vulkan-drivers (lavapipe and Mesa's hardware drivers).
set -euo pipefail

PACKAGES=(libvulkan1 mesa-vulkan-drivers)
# The oldest Mesa whose lavapipe Dawn accepts that this script has seen work (Mesa 22.3 fails, 25.0 works).
MIN_MESA_MAJOR=25

say() { echo "ensure-vulkan: $*"; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  say "skipping: no apt-get here; install a Vulkan loader and driver (Mesa >= $MIN_MESA_MAJOR lavapipe) by hand for WebGPU"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  say "skipping: not root (and no password-less sudo); as root run: $0"
  exit 0
fi

codename=""
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi

installed_version() { { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true; } | awk '$3 == "installed" { print $4 }'; }
# "25.0.7-2~bpo12+1" -> 25 (an epoch "1:" is dropped).
major_of() { echo "$1" | sed -E 's/^[0-9]+://; s/^([0-9]+).*/\1/'; }

missing=()
for p in "${PACKAGES[@]}"; do
  v=$(installed_version "$p")
  if [ -z "$v" ]; then
    missing+=("$p")
  elif [ "$p" = mesa-vulkan-drivers ] && [ "$codename" = bookworm ] && [ "$(major_of "$v")" -lt "$MIN_MESA_MAJOR" ]; then
    say "mesa-vulkan-drivers $v is too old for WebGPU (Dawn refuses Mesa 22.3's lavapipe); upgrading from bookworm-backports"
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  say "nothing to do: libvulkan1 $(installed_version libvulkan1), mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
target=()
if [ "$codename" = bookworm ]; then
  if grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "bookworm-backports apt source already present"
  else
    file=/etc/apt/sources.list.d/bookworm-backports.sources
    say "adding the bookworm-backports apt source ($file)"
    printf '%s\n' \
      'Types: deb' \
      'URIs: http://deb.debian.org/debian' \
      'Suites: bookworm-backports' \
      'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | "${SUDO[@]}" tee "$file" >/dev/null
  fi
  target=(-t bookworm-backports)
fi

say "apt-get update"
"${SUDO[@]}" apt-get update -qq
say "installing ${missing[*]}${target:+ from ${target[1]}}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${target[@]}" "${missing[@]}"
say "installed: libvulkan1 $(installed_version libvulkan1), mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers)"
