#!/usr/bin/env bash
# Builds the libFuzzer variant of vmcmux and runs every fuzz target under tests/fuzz/
# (fuzz-*.c) for SECONDS each (default 300), one after the other, on a scratch copy
# of its seed corpus. Prints a summary table (final exec/s, cov, ft) and exits
# non-zero if any target crashed, leaked, timed out or did not build.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# Environment:
#   FUZZ_BUILDDIR   build directory (default build-fuzz; configured with clang and
#                   -Dfuzzing=enabled: ASan/UBSan and coverage on every object)
#   FUZZ_ARTIFACTS  where crash/leak/timeout inputs and logs go
#                   (default $FUZZ_BUILDDIR/fuzz-artifacts/<target>/)
#   FUZZ_ARGS       extra libFuzzer arguments, e.g. "-max_len=65536"
#   FUZZ_KEEP=1     keep the scratch working corpora (their path is printed)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

seconds=${1:-300}
shift || true
case $seconds in
'' | *[!0-9]* | 0)
    echo "usage: tools/fuzz.sh [SECONDS] [TARGET...]  (SECONDS a positive integer)" >&2
    exit 2
    ;;
esac

builddir=${FUZZ_BUILDDIR:-build-fuzz}
artifacts=${FUZZ_ARTIFACTS:-$builddir/fuzz-artifacts}

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is needed for libFuzzer builds" >&2
    exit 2
fi

# -Dfuzzing=enabled compiles every object with -fsanitize=fuzzer-no-link,address,undefined
# (so libFuzzer sees the coverage of the libraries, not only of the fuzz programs)
# and links the fuzz programs with -fsanitize=fuzzer.
if [ ! -f "$builddir/build.ninja" ]; then
    setup_log=$(mktemp)
    CC=clang meson setup "$builddir" -Dfuzzing=enabled -Dbuildtype=debugoptimized \
        -Db_lundef=false >"$setup_log" 2>&1 || {
        cat "$setup_log" >&2
        rm -f "$setup_log"
        echo "fuzz.sh: meson setup failed" >&2
        exit 2
    }
    rm -f "$setup_log"
else
    meson setup --reconfigure "$builddir" >/dev/null || exit 2
fi
if ! grep -A1 '^rule c_COMPILER' "$builddir/build.ninja" | grep -qE 'command = ([^ ]*/)?clang(-[0-9]+)? '; then
    echo "fuzz.sh: $builddir is not a clang build; remove it or set FUZZ_BUILDDIR" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for src in tests/fuzz/fuzz-*.c; do
        [ -e "$src" ] || continue
        targets+=("$(basename "$src" .c)")
    done
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets under tests/fuzz/" >&2
    exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vmc-fuzz.XXXXXX")
if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    echo "working corpora kept in $scratch"
else
    trap 'rm -rf "$scratch"' EXIT
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export G_DEBUG=${G_DEBUG:-fatal-warnings}

status=0
rows=()
for t in "${targets[@]}"; do
    bin="$builddir/tests/fuzz/$t"
    art="$artifacts/$t"
    mkdir -p "$art"
    log="$art/fuzz.log"

    if ! meson compile -C "$builddir" "tests/fuzz/$t" >"$art/build.log" 2>&1 || [ ! -x "$bin" ]; then
        rows+=("$t|BUILD-FAIL|-|-|-|$art/build.log")
        status=1
        continue
    fi

    corpus="$scratch/$t"
    mkdir -p "$corpus"
    if [ -d "tests/fuzz/corpus/$t" ]; then
        cp -R "tests/fuzz/corpus/$t/." "$corpus/"
    fi

    before=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    echo "== $t: ${seconds}s ($(find "$corpus" -type f | wc -l) seeds)"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -artifact_prefix="$art/" -print_final_stats=1 ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
    rc=$?
    after=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)

    stats=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
    execs=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' <<<"$stats")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$stats")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stats")
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="CRASH"
        status=1
        note=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
            -o -name 'timeout-*' -o -name 'oom-*' \) -newer "$art/build.log" | head -n 1)
        note=${note:-$log}
    else
        result="ok"
        note=""
    fi
    rows+=("$t|$result|${execs:--}|${cov:--}|${ft:--}|$note")
done

echo
printf '%-18s %-10s %10s %8s %8s  %s\n' target result exec/s cov ft artifact
for r in "${rows[@]}"; do
    IFS='|' read -r t result execs cov ft note <<<"$r"
    printf '%-18s %-10s %10s %8s %8s  %s\n' "$t" "$result" "$execs" "$cov" "$ft" "$note"
done
echo "logs and crash inputs: $artifacts/<target>/"
exit $status
