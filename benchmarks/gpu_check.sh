#!/usr/bin/env bash
# The GPU check in one call: the gpu tests and the GPU latency tables (PaddleClas's layout), for a machine with an
# NVIDIA GPU and PyTorch with CUDA. No network; nothing is installed; everything is written under OUT.
#
#   bash benchmarks/gpu_check.sh [OUT] [--dry-run]        OUT: a new or empty folder (default: gpu_check_out)
#
# Phases, each under its own time limit (seconds), about 8 minutes in all on an H100/H200-class GPU:
#   preflight   30   is there a CUDA GPU; GPU, driver and library versions -> OUT/env.json
#   tests      150   pytest -m gpu tests/test_gpu.py -> OUT/tests/ (torch.compile tests last: a cut loses them first)
#   eager      150   benchmark.py --backend cuda: fp32,fp16,bf16 x batch 1,8,64 x 6 models, timm's ports beside them
#                    on the same backend -> OUT/bench/eager.{md,json}
#   compiled   130   benchmark.py --backend tensorrt,cuda-compile: fp32,fp16 x batch 1,8 (TensorRT engine builds
#                    and inductor compiles take 10-60 s each, so each backend gets 25 s of preparation per model,
#                    and batch 64 and bf16 are left to the eager phase; no timm: re-parameterized, its port exports
#                    the same graph) -> OUT/bench/compiled.{md,json}
#   summary     20   OUT/summary.md, OUT/latency_paddleclas.md, and a short summary here
# Each benchmark stops starting measurements 40 s before its limit (--time-budget, shared among the models) and
# rewrites its results after every measurement, so a phase cut at its limit keeps what it measured. A phase at its
# limit gets SIGINT (pytest and benchmark.py save what they have), then SIGKILL 10 s later: 8 min 45 s at most.
# Without a CUDA GPU the script says so in one line, writes OUT/summary.md, and exits 0 within seconds.
#
# Environment (optional): PYTHON (default: .venv/bin/python if present, else python3); GPU_CHECK_MODELS,
# GPU_CHECK_BATCH_SIZES, GPU_CHECK_PRECISIONS (eager phase), GPU_CHECK_COMPILED_BATCH_SIZES,
# GPU_CHECK_COMPILED_PRECISIONS, GPU_CHECK_PREPARE_BUDGET (compiled phase: backend=seconds,...), GPU_CHECK_MAX_TIME
# (timing budget per measurement), GPU_CHECK_{TESTS,EAGER,COMPILED}_LIMIT (phase limits); GPU_CHECK_FORCE=1 runs
# every phase without a GPU (a test of this script: everything reports skipped).
# Exit: 0 done (failures are in the summary) or no GPU; 1 this Python cannot run the check; 2 bad arguments.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USAGE="usage: bash benchmarks/gpu_check.sh [OUT] [--dry-run]"

fail() { echo "gpu_check.sh: error: $*" >&2; exit 2; }

OUT="" DRY=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; echo "$USAGE"; exit 0 ;;
    --dry-run) DRY=1 ;;
    -*) fail "unknown option $arg ($USAGE)" ;;
    *) [ -z "$OUT" ] || fail "one output folder only, got '$OUT' and '$arg' ($USAGE)"; OUT=$arg ;;
  esac
done
OUT=${OUT:-gpu_check_out}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
[ -e "$OUT" ] && [ ! -d "$OUT" ] && fail "$OUT is a file, not a folder: name a new folder for the results"
[ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && fail "$OUT already holds files: name a new folder (or empty this one)"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
MODELS=${GPU_CHECK_MODELS:-pphgnet_tiny,pphgnet_small,pphgnetv2_b4,pplcnetv2_base,hrnet_w18_c,resnet50_vd}
BATCH=${GPU_CHECK_BATCH_SIZES:-1,8,64}
PREC=${GPU_CHECK_PRECISIONS:-fp32,fp16,bf16}
CBATCH=${GPU_CHECK_COMPILED_BATCH_SIZES:-1,8}
CPREC=${GPU_CHECK_COMPILED_PRECISIONS:-fp32,fp16}
PREPARE=${GPU_CHECK_PREPARE_BUDGET:-tensorrt=25,cuda-compile=25}
MAXT=${GPU_CHECK_MAX_TIME:-0.3}
TESTS_LIMIT=${GPU_CHECK_TESTS_LIMIT:-150}
EAGER_LIMIT=${GPU_CHECK_EAGER_LIMIT:-150}
COMPILED_LIMIT=${GPU_CHECK_COMPILED_LIMIT:-130}
for v in TESTS_LIMIT EAGER_LIMIT COMPILED_LIMIT; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 45 ] || fail "GPU_CHECK_${v} must be a whole number of seconds above 45, got '${!v}'"
done

TESTS_CMD=("$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q -rfEs
           --junitxml "$OUT/tests/junit.xml" -o junit_family=xunit2)
COMMON=(--model "$MODELS" --table paddleclas --max-time "$MAXT" --no-roofline --no-details)
EAGER_CMD=("$PY" benchmark.py "${COMMON[@]}" --backend cuda --precision "$PREC" --batch-sizes "$BATCH"
           --compare timm --compare-backends cuda --time-budget $((EAGER_LIMIT - 40))
           --results-file "$OUT/bench/eager.md" --results-file "$OUT/bench/eager.json")
COMPILED_CMD=("$PY" benchmark.py "${COMMON[@]}" --backend tensorrt,cuda-compile --precision "$CPREC"
              --batch-sizes "$CBATCH" --compare none --prepare-budget "$PREPARE" --time-budget $((COMPILED_LIMIT - 40))
              --results-file "$OUT/bench/compiled.md" --results-file "$OUT/bench/compiled.json")

if [ "$DRY" = 1 ]; then
  echo "gpu_check (dry run): python $PY; output $OUT; nothing is run or written"
  for name in TESTS_CMD EAGER_CMD COMPILED_CMD; do
    declare -n cmd=$name
    printf 'command: '; printf '%q ' "${cmd[@]}"; echo
  done
  exit 0
fi

mkdir -p "$OUT/tmp" || fail "cannot create $OUT"
TMP="$OUT/tmp"
trap 'rm -rf "$TMP"' EXIT
# Everything the tools write goes under OUT: temporary files (ONNX exports), compiler caches, bytecode (none).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TMPDIR="$TMP" \
  TORCHINDUCTOR_CACHE_DIR="$TMP/inductor" TRITON_CACHE_DIR="$TMP/triton" CUDA_CACHE_PATH="$TMP/nv" \
  XDG_CACHE_HOME="$TMP/cache" MPLCONFIGDIR="$TMP/mpl" HF_HOME="$TMP/hf" HF_HUB_OFFLINE=1 HGZOO_CACHE="$TMP/hgzoo" \
  TORCH_HOME="$TMP/torch"
cd "$ROOT" || exit 1

FORCE=()
[ "${GPU_CHECK_FORCE:-0}" = 1 ] && FORCE=(--force)
START=$SECONDS
PRE=$(timeout -k 10 30 "$PY" -m benchmarks.gpu_check preflight "$OUT" ${FORCE[@]+"${FORCE[@]}"} 2>"$TMP/preflight.err")
RC=$?
if [ "$RC" = 3 ]; then
  { echo "# GPU check: no usable CUDA GPU"; echo
    echo "Nothing was measured: $PRE (python: $PY; $(date -Iseconds))."; echo
    echo "Run \`bash benchmarks/gpu_check.sh OUT\` on a machine with an NVIDIA GPU and PyTorch with CUDA."
  } > "$OUT/summary.md"
  echo "gpu_check: no usable CUDA GPU ($PRE); nothing measured; see $OUT/summary.md"
  exit 0
elif [ "$RC" != 0 ]; then
  [ -n "$PRE" ] || PRE="the preflight failed (exit $RC): $(tail -n 3 "$TMP/preflight.err" | tr '\n' ' ')"
  { echo "# GPU check: cannot run"; echo; echo "$PRE"; } > "$OUT/summary.md"
  echo "gpu_check: error: $PRE" >&2
  exit 1
fi
echo "gpu_check: $PRE; results in $OUT"
printf 'preflight\t0\t%s\t30\t-\n' $((SECONDS - START)) > "$OUT/phases.tsv"
mkdir -p "$OUT/tests" "$OUT/bench"

phase() {  # name limit log command...: run it under its limit (SIGINT first, so pytest and benchmark.py save)
  local name=$1 limit=$2 log=$3 t0=$SECONDS rc
  shift 3
  echo "gpu_check: $name (limit ${limit} s) ..."
  timeout -s INT -k 10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - t0)) "$limit" "$log" >> "$OUT/phases.tsv"
  echo "gpu_check: $name: exit $rc after $((SECONDS - t0)) s$([ "$rc" = 124 ] && echo ' (cut at its limit)')"
}

phase tests "$TESTS_LIMIT" "$OUT/tests/pytest.log" "${TESTS_CMD[@]}"
phase eager "$EAGER_LIMIT" "$OUT/bench/eager.log" "${EAGER_CMD[@]}"
phase compiled "$COMPILED_LIMIT" "$OUT/bench/compiled.log" "${COMPILED_CMD[@]}"
timeout -k 5 20 "$PY" -m benchmarks.gpu_check summary "$OUT" || echo "gpu_check: the summary step failed (exit $?)"
echo "gpu_check: finished in $((SECONDS - START)) s"
