#!/usr/bin/env bash
# The device check (issue 16): on a Linux x86-64 machine with an NVIDIA GPU and no Node.js and no network, unpacks
# the payload scripts/pack-device-check.mjs made (a Node binary, onnxruntime-node, the built engine/core/tiny
# adapter/CLI, the Vulkan loader) and runs, on each execution provider that loads:
#   1. edit-r1 doctor (which providers load, the CUDA the provider links, the GPU);
#   2. a few tiny-adapter training steps (a rollout, then fused NFT steps with AdamW; on webgpu the same steps
#      again with the training state kept on the device, checked against the host's);
#   3. one FLUX-Kontext-size double-stream block (hidden 3072, 24 heads, T5 width 4096, random weights, LoRA
#      rank 32 on the Edit-R1 targets) forward + backward at 512² (1024 target + 1024 context + 128 text tokens);
#   4. the same block checkpointed with attention 4 heads at a time (block-lean: the same loss, less memory),
# printing times, and device memory from nvidia-smi (before, peak while running, after) when it is there.
#
# Usage: scripts/device-check.sh [payload.tar.gz]     (default: .device-check/payload.tar.gz next to scripts/)
# Environment: DEVICE_CHECK_DEVICES (default "cpu webgpu cuda"), DEVICE_CHECK_BLOCK=full|small (default full;
# small is a 4-head stand-in for checking the script on a machine without a GPU), DEVICE_CHECK_STEPS (default 3),
# DEVICE_CHECK_TIMEOUT seconds per device and part (default 900), DEVICE_CHECK_PARTS (default "tiny block block-lean").
# The cpu pass of the full-size block takes minutes on a few cores; leave cpu out of DEVICE_CHECK_DEVICES on a
# short lease. Exit status: 0 when every device that loaded passed, 1 otherwise.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PAYLOAD="${1:-$HERE/../.device-check/payload.tar.gz}"
DEVICES="${DEVICE_CHECK_DEVICES:-cpu webgpu cuda}"
PARTS="${DEVICE_CHECK_PARTS:-tiny block block-lean}"
BLOCK="${DEVICE_CHECK_BLOCK:-full}"
STEPS="${DEVICE_CHECK_STEPS:-3}"
TIMEOUT="${DEVICE_CHECK_TIMEOUT:-900}"

say() { echo "device-check: $*"; }

if [ ! -f "$PAYLOAD" ]; then
  say "no payload at $PAYLOAD; on a machine with Node.js and the built repository run: node scripts/pack-device-check.mjs"
  exit 2
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  say "the payload is for Linux x86-64, this is $(uname -s)-$(uname -m)"
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/edit-r1-device-check.XXXXXX")"
SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
tar -xzf "$PAYLOAD" -C "$WORK" || { say "cannot unpack $PAYLOAD"; exit 2; }
ROOT="$WORK/edit-r1-device-check"
NODE="$ROOT/node/bin/node"
APP="$ROOT/app"
sed 's/^/  /' "$ROOT/MANIFEST.txt"

# The packed Vulkan loader only where the machine has none (the NVIDIA driver's ICD is found by either).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  if [ -f "$ROOT/lib/libvulkan.so.1" ]; then
    export LD_LIBRARY_PATH="$ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "using the packed Vulkan loader"
  else
    say "no Vulkan loader here or in the payload: webgpu will not load"
  fi
fi

HAVE_SMI=0
if command -v nvidia-smi >/dev/null 2>&1; then
  HAVE_SMI=1
  say "GPU:"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used --format=csv | sed 's/^/  /'
else
  say "no nvidia-smi: device memory is not reported"
fi
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -i json | sed 's/^/  Vulkan ICD: /'

# Device memory used (MiB, GPU 0), and a background sampler of its peak.
mem_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1; }
start_sampler() {
  [ "$HAVE_SMI" = 1 ] || return 0
  : >"$WORK/mem.log"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$WORK/mem.log" 2>/dev/null &
  SAMPLER=$!
}
stop_sampler() {
  [ -n "$SAMPLER" ] || return 0
  kill "$SAMPLER" 2>/dev/null
  wait "$SAMPLER" 2>/dev/null
  SAMPLER=""
  sort -n "$WORK/mem.log" | tail -1
}

say "edit-r1 doctor:"
(cd "$APP" && timeout 300 "$NODE" node_modules/@edit-r1/cli/dist/bin.js doctor) 2>&1 | sed 's/^/  /'

STATUS=0
SUMMARY=()
for device in $DEVICES; do
  loaded=1
  for part in $PARTS; do
    if [ $loaded = 0 ]; then
      SUMMARY+=("$device $part: skipped (the device did not load)")
      continue
    fi
    before=""
    [ "$HAVE_SMI" = 1 ] && before="$(mem_used)"
    start_sampler
    t0=$(date +%s.%N)
    (cd "$APP" && timeout "$TIMEOUT" "$NODE" driver.mjs --device "$device" --part "$part" --block "$BLOCK" --steps "$STEPS") \
      >"$WORK/out.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    peak="$(stop_sampler)"
    sed 's/^/  /' "$WORK/out.log"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    mem=""
    [ "$HAVE_SMI" = 1 ] && mem=", GPU 0 memory used ${before} MiB before, peak ${peak:-?} MiB, $(mem_used) MiB after"
    if [ $rc -eq 0 ]; then
      result="ok"
    elif grep -qiE "no adapter|providers_shared|cannot load|not available|needs a Vulkan|providers_cuda|Failed to load" "$WORK/out.log"; then
      result="did not load (see above)"
      loaded=0
    elif [ $rc -eq 124 ]; then
      result="timed out after ${TIMEOUT}s"
      STATUS=1
    else
      result="FAILED (exit $rc)"
      STATUS=1
    fi
    SUMMARY+=("$device $part: $result, ${wall} s wall${mem}")
  done
done

say "summary:"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
exit $STATUS
