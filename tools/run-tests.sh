#!/usr/bin/env bash
# Installs what is missing, builds vmcmux with ASan/UBSan and warnings as errors,
# and runs the whole default test suite. Extra arguments go to `meson test`.
# Environment: BUILDDIR (default build-test), VMC_FUZZ_SECONDS (run each libFuzzer
# target that long after the suite; default 0 = skip).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh test

builddir=${BUILDDIR:-build-test}
if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir" -Dwerror=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized
else
    meson setup --reconfigure "$builddir" >/dev/null
fi
meson compile -C "$builddir"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}

status=0
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" || status=$?

# A plain closing line with the counts, from meson's own summary.
log="$builddir/meson-logs/testlog.json"
if [ -f "$log" ]; then
    python3 - "$log" <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    counts[r["result"]] = counts.get(r["result"], 0) + 1
ok = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
bad = sum(v for k, v in counts.items() if k not in ("OK", "EXPECTEDFAIL", "SKIP"))
print(f"tests: {ok} passed, {bad} failed, {counts.get('SKIP', 0)} skipped")
PY
fi

if [ "${VMC_FUZZ_SECONDS:-0}" != 0 ]; then
    tools/fuzz.sh "${VMC_FUZZ_SECONDS}"
fi
exit $status
