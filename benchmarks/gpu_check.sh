#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA device and no network:
#   1. installs the wheels carried in .whl/ (soundfile, cffi, pycparser, soxr, mutagen: what the
#      training path imports beyond torch/numpy/scipy/...) into /tmp/site, when there are any;
#   2. python3 -m pytest tests/test_gpu.py        -> $OUT/env.txt, $OUT/pytest.log, $OUT/gpu-tests.json
#   3. benchmarks/bench_train.py --device cuda    -> $OUT/bench.log, $OUT/train-cuda.json
# Everything is written to $OUT as it comes (the bench rewrites its json after every variant), so a
# run cut short keeps what it measured. The musicrep source is used in place (PYTHONPATH=src).
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine ($OUT set by the caller)
#   OUT=/tmp/x PYTHON=.venv/bin/python WHEELS=0 BENCH_DEVICE=cpu \
#     BENCH_ARGS="--gpu-variants --width 16 ..." bash benchmarks/gpu_check.sh   # a dry run on a CPU
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MUSICREP_QUIET=1
t0=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - t0 ))s] $*" | tee -a "$OUT/steps.log"; }

if [ "${WHEELS:-1}" != 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
    say "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl >"$OUT/pip.log" 2>&1 || { say "wheel install failed"; cat "$OUT/pip.log"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

{
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import platform, sys, torch
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
import soundfile, soxr, mutagen, musicrep
print("soundfile", soundfile.__version__, "libsndfile", soundfile.__libsndfile_version__, "soxr", soxr.__version__,
      "mutagen", mutagen.version_string, "musicrep", musicrep.__file__)
EOF
} >"$OUT/env.txt" 2>&1
say "environment: $(grep -E '^(torch|device)' "$OUT/env.txt" | tr '\n' ' ')"

say "pytest tests/test_gpu.py"
MUSICREP_GPU_REPORT="$OUT/gpu-tests.json" timeout "${TEST_TIMEOUT:-170}" \
    "$PY" -m pytest -q -rA -p no:cacheprovider tests/test_gpu.py >"$OUT/pytest.log" 2>&1
test_rc=$?
grep -E "passed|failed|skipped|error" "$OUT/pytest.log" | tail -3
say "pytest exit $test_rc"

if [ "${SKIP_BENCH:-0}" = 1 ]; then say "bench skipped (SKIP_BENCH=1)"; exit "$test_rc"; fi
say "bench_train.py --device ${BENCH_DEVICE:-cuda}"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
timeout "${BENCH_TIMEOUT:-200}" "$PY" benchmarks/bench_train.py --device "${BENCH_DEVICE:-cuda}" \
    --out "$OUT/train-${BENCH_DEVICE:-cuda}.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
say "bench exit $bench_rc"
[ "$test_rc" = 0 ] && [ "$bench_rc" = 0 ]
