#!/usr/bin/env bash
# Every GPU-host measurement in one command, for a machine with a hardware GPU and many cores
# (starting such a machine is the slow part: run them all at once). Usage, from the project root
# after `npm run build`:
#
#   bash scripts/gpu-host.sh OUT_DIR [STEP...]
#
# STEPs (default: all, in this order): grid (the shared WebGPU test grid, CI=true), webgpu
# (bench/webgpu.ts), tiles (decode tile variants, T = 1 and 16), gemm (prefill tile variants),
# gemm-defaults (prefill calls only: chosen kernels, partials folded and not; not in the default list),
# tiles-pair (T = 1 and 16: the chosen tiles against the other kernels and y read late; not in the
# default list), fused (T = 1 and 16: the chosen kernels against fused_tile.wgsl's tiles; not in the default list),
# threads (bench/threads-scaling.ts), regret (bench/regret.ts). GEMM_ONLY=<regex> limits the gemm
# step to the shapes it matches (bench/webgpu-gemm.ts --only). Each step has its own time limit
# and writes its log and JSON into OUT_DIR; bench/results/ gets the files the benches write.
set -u
out=${1:?usage: bash scripts/gpu-host.sh OUT_DIR [STEP...]}
shift
mkdir -p "$out"
steps=${*:-grid webgpu tiles gemm threads regret}
tsx="node node_modules/tsx/dist/cli.mjs"
for step in $steps; do
  start=$(date +%s)
  case $step in
  grid) CI=true timeout 300 node node_modules/vitest/vitest.mjs run test/sgmv-webgpu.test.ts test/sgmv-webgpu-discrete.test.ts test/webgpu-gemm.test.ts test/webgpu-fused.test.ts test/encode.test.ts test/webgpu-subgroups.test.ts >"$out/grid.log" 2>&1 ;;
  # only the JSON this run wrote (the newest; marked partial when the limit cut it short): a few
  # files come back from the machine, not all
  webgpu)
    timeout 300 $tsx bench/webgpu.ts >"$out/webgpu.log" 2>&1
    rc=$?
    cp "$(ls -t bench/results/webgpu-*.json | head -1)" "$out/"
    (exit $rc)
    ;;
  tiles) timeout 200 $tsx bench/webgpu-tiles.ts '--only= T(1|16)$' --out="$out/tiles.json" >"$out/tiles.log" 2>&1 ;;
  gemm) timeout 300 $tsx bench/webgpu-gemm.ts ${GEMM_ONLY:+"--only=$GEMM_ONLY"} --out="$out/gemm-tuning.json" >"$out/gemm.log" 2>&1 ;;
  fused) timeout 200 $tsx bench/webgpu-tiles.ts --fused '--only= T(1|16)$' --out="$out/fused.json" >"$out/fused.log" 2>&1 ;;
  tiles-pair) timeout 200 $tsx bench/webgpu-tiles.ts --pair '--only= T(1|16)$' --out="$out/tiles-pair.json" >"$out/tiles-pair.log" 2>&1 ;;
  gemm-defaults) timeout 200 $tsx bench/webgpu-gemm.ts --defaults --out="$out/gemm-defaults.json" >"$out/gemm-defaults.log" 2>&1 ;;
  threads) timeout 400 $tsx bench/threads-scaling.ts --json "$out/threads-scaling-gpu-host.json" >"$out/threads.log" 2>&1 ;;
  regret) timeout 500 $tsx bench/regret.ts --json "$out/regret-gpu-host.json" >"$out/regret.log" 2>&1 ;;
  *) echo "gpu-host.sh: unknown step $step" >&2 ;;
  esac
  echo "$step: exit $? in $(($(date +%s) - start)) s"
done
