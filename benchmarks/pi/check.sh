#!/usr/bin/env bash
# Raspberry Pi check: install lungcnn from aarch64 wheels into a minimal Debian bookworm arm64
# root with Python 3.11 (what 64-bit Raspberry Pi OS ships), run edge-classify there under
# qemu-user as a Pi 4 (Cortex-A72) and a Pi 5 (Cortex-A76), and compare its JSON lines with
# the same command on this x86_64 host: quantized outputs must be identical, float ones within
# 1e-5. Then it starts `edge-classify serve` (the `serve` extra, installed from aarch64 wheels
# too) under emulation as a Pi 4 and uploads one scan: its record must match the host's CLI.
# Emulation proves the aarch64 install and numerics; it is not a device and says nothing
# reliable about speed.
#
# Usage: benchmarks/pi/check.sh [--timing] [MODEL.tflite ...]   (default: the classifiers in lungcnn/edge/models/)
# Needs an x86_64 Debian host with apt-get and dpkg, the package registries, and the repo's
# venv (PYTHON, default .venv/bin/python, with lungcnn installed). Nothing outside the cache
# directory changes: no binfmt_misc, no host packages (qemu-user-static is fetched into the
# cache unless qemu-aarch64-static is already on PATH).
#
# Environment: LUNGCNN_PI_ROOT         cache directory (default /tmp/lungcnn-pi)
#              LUNGCNN_PI_APT_SOURCES  deb822 sources file to use instead of the host's
#                                      Debian bookworm entries
#              LUNGCNN_PI_TIMEOUT      seconds allowed for any one step (default 300)
#              LUNGCNN_PI_REPEATS      invokes per median with --timing (default 7)
#              PYTHON                  host Python with lungcnn installed
# Exit status: 0 all runs match; 1 a mismatch or a failed step (the last line says which).
set -Eeuo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/benchmarks/pi"
CACHE=${LUNGCNN_PI_ROOT:-/tmp/lungcnn-pi}
ROOT="$CACHE/root"
APT_DIR="$CACHE/apt"
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STEP_TIMEOUT=${LUNGCNN_PI_TIMEOUT:-300}
CORES=(cortex-a72 cortex-a76)                 # Raspberry Pi 4, Raspberry Pi 5
ROOT_PACKAGES=(python3.11 libstdc++6)          # LiteRT and numpy wheels need libstdc++
SCANS_PER_CLASS=4
SCAN_DIR="$REPO/data/covid19-dataset/test"
TIMING=0
TIMING_REPEATS=${LUNGCNN_PI_REPEATS:-7}

say() { echo "pi-check [${SECONDS}s]: $*" >&2; }
die() { echo "pi-check: FAIL: $*" >&2; exit 1; }
trap 'die "step failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'stop_server' EXIT
SERVER_PID=
# Nothing may hang CI: every external step runs under a timeout.
bounded() {
    local status=0
    timeout --kill-after=10 "$STEP_TIMEOUT" "$@" || status=$?
    [[ $status -ne 124 && $status -ne 137 ]] || die "timed out (or killed) after ${STEP_TIMEOUT}s: $*"
    return "$status"
}
host_py() { bounded "$PYTHON" "$HERE/pi_check.py" "$@"; }

parse_arguments() {
    MODELS=()
    for argument in "$@"; do
        case "$argument" in
            --timing) TIMING=1 ;;
            -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
            -*) die "unknown option $argument (see --help)" ;;
            *) MODELS+=("$(realpath "$argument")") ;;
        esac
    done
    if [[ ${#MODELS[@]} -eq 0 ]]; then
        shopt -s nullglob
        MODELS=()
        for model in "$REPO"/lungcnn/edge/models/*.tflite; do
            # A lung-field segmenter travels beside its classifier; it is not classified with.
            grep -q '"kind": "lung-field segmenter"' "${model%.tflite}.json" 2>/dev/null \
                || MODELS+=("$model")
        done
        shopt -u nullglob
    fi
    [[ ${#MODELS[@]} -gt 0 ]] || die "no model: lungcnn/edge/models/*.tflite is empty; pass MODEL.tflite"
    for model in "${MODELS[@]}"; do
        [[ -f "$model" ]] || die "$model: model file not found"
        [[ -f "${model%.tflite}.json" ]] || die "$model: manifest ${model%.tflite}.json not found"
    done
}

check_host() {
    [[ $(uname -m) == x86_64 ]] || die "this check emulates arm64 on an x86_64 host (this is $(uname -m))"
    command -v apt-get >/dev/null || die "needs apt-get (Debian host)"
    command -v dpkg >/dev/null || die "needs dpkg (Debian host)"
    [[ -x "$PYTHON" ]] || die "$PYTHON not found: create the venv first (see README) or set PYTHON"
    "$PYTHON" -c "import lungcnn.edge.runtime" 2>/dev/null || die "$PYTHON cannot import lungcnn: pip install -e . first"
}

# apt with private state, cache and sources, native architecture arm64: nothing of the host's
# apt state changes. The host's apt.conf (proxies, keyrings) still applies.
private_apt() {
    bounded apt-get -q \
        -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
        -o Dir::Etc::SourceParts="$APT_DIR/sources.list.d" \
        -o Dir::Etc::Preferences="$APT_DIR/preferences" \
        -o Dir::Etc::PreferencesParts="$APT_DIR/preferences.d" \
        -o Dir::State="$APT_DIR/state" -o Dir::State::Status="$APT_DIR/state/status" \
        -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
        -o APT::Architectures::="$(dpkg --print-architecture)" \
        -o pkgCacheGen::Essential=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
        "$@"
}

write_apt_sources() {
    mkdir -p "$APT_DIR"/{sources.list.d,preferences.d,state/lists/partial,cache/archives/partial}
    touch "$APT_DIR/state/status"
    if [[ -n ${LUNGCNN_PI_APT_SOURCES:-} ]]; then
        cp "$LUNGCNN_PI_APT_SOURCES" "$APT_DIR/sources.list.d/debian.sources"
    else
        local source_list source_parts
        eval "$(apt-config shell source_list Dir::Etc::SourceList/f source_parts Dir::Etc::SourceParts/d)"
        host_py sources "$source_list" "$source_parts" > "$APT_DIR/sources.list.d/debian.sources"
    fi
    : > "$APT_DIR/sources.list"
}

# The arm64 root: python3.11 and its dependencies unpacked with dpkg -x. Rebuilt only when
# the sources or package list change.
build_root() {
    local key
    key=$(cat "$APT_DIR/sources.list.d/debian.sources" <(echo "${ROOT_PACKAGES[*]}") | sha256sum | cut -c1-16)
    if [[ -x "$ROOT/usr/bin/python3.11" && $(cat "$ROOT/.lungcnn-key" 2>/dev/null) == "$key" ]]; then
        say "arm64 root: cached in $ROOT"
        return
    fi
    say "arm64 root: downloading ${ROOT_PACKAGES[*]} and dependencies (Debian bookworm arm64)"
    private_apt -o APT::Update::Error-Mode=any update >/dev/null \
        || die "apt-get update of the arm64 package indexes failed (sources: $APT_DIR/sources.list.d)"
    rm -f "$APT_DIR"/cache/archives/*.deb
    private_apt -y --download-only --no-install-recommends install "${ROOT_PACKAGES[@]}" >/dev/null \
        || die "apt-get could not download the arm64 packages ${ROOT_PACKAGES[*]}"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    for deb in "$APT_DIR"/cache/archives/*.deb; do
        dpkg -x "$deb" "$ROOT"
    done
    precompile "$ROOT/usr/lib/python3.11"
    echo "$key" > "$ROOT/.lungcnn-key"
    say "arm64 root: $(ls "$APT_DIR"/cache/archives/*.deb | wc -l) packages unpacked into $ROOT"
}

# Debian ships no .pyc files (its postinst compiles them) and an emulated Python must not
# write any (qemu -L would put new files on the host's paths), so compile once with the
# host's Python when it is also 3.11 (same bytecode); otherwise every run compiles in memory.
precompile() {
    if "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        bounded "$PYTHON" -m compileall -q -j 0 "$@" >/dev/null 2>&1 || true
    fi
}

find_qemu() {
    QEMU=$(command -v qemu-aarch64-static || true)
    if [[ -z $QEMU ]]; then
        QEMU="$CACHE/bin/qemu-aarch64-static"
        [[ -x $QEMU ]] || fetch_qemu
    fi
    [[ -x $QEMU ]] || die "qemu-aarch64-static not available"
    say "qemu: $("$QEMU" --version | head -1) ($QEMU)"
}

# Debian's qemu-user-static, unpacked into the cache; only the aarch64 binary is kept.
fetch_qemu() {
    say "qemu: fetching Debian's qemu-user-static into $CACHE/bin"
    local unpack="$CACHE/qemu-unpack"
    rm -rf "$unpack" && mkdir -p "$unpack" "$CACHE/bin"
    (cd "$unpack" && private_apt download "qemu-user-static:$(dpkg --print-architecture)" >/dev/null) \
        || die "apt-get could not download qemu-user-static"
    dpkg -x "$unpack"/qemu-user-static_*.deb "$unpack/files"
    mv "$unpack/files/usr/bin/qemu-aarch64-static" "$QEMU"
    rm -rf "$unpack"
}

package_sources() {
    tar -C "$REPO" --exclude=__pycache__ --exclude='*.egg-info' \
        -cf - pyproject.toml README.md lungcnn
}

# The emulated install is redone only when the checkout, the pins or the root change.
install_key() {
    { package_sources; cat "$CACHE/constraints.txt" "$ROOT/.lungcnn-key"; } | sha256sum | cut -c1-16
}

# aarch64 wheels for Python 3.11, pinned to the versions installed on the host so that both
# sides run the same numpy, Pillow and LiteRT; lungcnn itself is built from this checkout.
download_wheels() {
    local source="$CACHE/src" platforms=(--platform manylinux2014_aarch64)
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
    rm -rf "$source" "$CACHE/dist" && mkdir -p "$source"
    package_sources | tar -C "$source" -xf -
    bounded "$PYTHON" -m pip wheel -q --no-deps -w "$CACHE/dist" "$source" >/dev/null
    LUNGCNN_WHEEL=$(ls "$CACHE"/dist/lungcnn-*-py3-none-any.whl)
    say "wheels: $(basename "$LUNGCNN_WHEEL") + $(tr '\n' ' ' < "$CACHE/constraints.txt")(aarch64, cp311)"
    rm -f "$CACHE"/wheels/lungcnn-*.whl
    bounded "$PYTHON" -m pip download -q -d "$CACHE/wheels" --only-binary=:all: "${platforms[@]}" \
        --python-version 3.11 --implementation cp --abi cp311 \
        -c "$CACHE/constraints.txt" "$LUNGCNN_WHEEL[serve]" pip >&2 || die "pip download of aarch64 wheels failed"
}

# EMULATED: the command that runs the arm64 root's Python under qemu as core $1, with a clean
# environment (the host's pip config, user site and PYTHONPATH must not leak in).
emulated_argv() {
    host_py cpuinfo "$ROOT" "$1" >/dev/null
    EMULATED=(env -i PATH=/usr/bin:/bin HOME="$CACHE/home" LC_ALL=C.UTF-8 PYTHONNOUSERSITE=1
              PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$CACHE/site"
              "$QEMU" -L "$ROOT" -cpu "$1" "$ROOT/usr/bin/python3.11")
}

emulated_python() {
    local core=$1
    shift
    emulated_argv "$core"
    bounded "${EMULATED[@]}" "$@"
}

install_emulated() {
    say "install: emulated pip install 'lungcnn[serve]' (aarch64 Python 3.11, from wheels only)"
    rm -rf "$CACHE/site"
    local pip_wheel
    pip_wheel=$(ls -v "$CACHE"/wheels/pip-*.whl | tail -1)
    emulated_python cortex-a72 "$pip_wheel/pip" install -q --isolated --no-index \
        --disable-pip-version-check --root-user-action=ignore --no-compile \
        --find-links "$CACHE/wheels" --constraint "$CACHE/constraints.txt" \
        --target "$CACHE/site" 'lungcnn[serve]' >&2 \
        || die "emulated pip install of lungcnn[serve] from the aarch64 wheels failed"
    [[ -f "$CACHE/site/bin/edge-classify" ]] || die "emulated pip install did not produce edge-classify"
    precompile "$CACHE/site"
}

pick_scans() {
    SCANS=()
    for class_dir in "$SCAN_DIR"/*/; do
        while IFS= read -r scan; do SCANS+=("$scan"); done \
            < <(find "$class_dir" -maxdepth 1 -type f | sort | head -n "$SCANS_PER_CLASS")
    done
    # One file that is not an image: the error path must behave the same on both sides.
    SCANS+=("$REPO/data/covid19-dataset/README.md")
    [[ ${#SCANS[@]} -gt 1 ]] || die "no scans found under $SCAN_DIR"
}

# The host runs `python -m lungcnn.edge`; the emulated side runs the installed edge-classify console
# script, so the wheel's entry point is exercised too.
classify() {
    local where=$1 model=$2 out=$3 status=0
    if [[ $where == host ]]; then
        bounded "$PYTHON" -m lungcnn.edge "${SCANS[@]}" --json --model "$model" >"$out" 2>"$out.err" || status=$?
    else
        emulated_python "$where" "$CACHE/site/bin/edge-classify" "${SCANS[@]}" --json \
            --model "$model" >"$out" 2>"$out.err" || status=$?
    fi
    ((status <= 128)) || die "$where: edge-classify killed by signal $((status - 128)); stderr in $out.err"
    echo "$status"
}

# A bundled model runs from the installed package's copy, which proves the wheel ships it.
installed_copy() {
    case $1 in
        "$REPO"/lungcnn/edge/models/*) echo "$CACHE/site/lungcnn/edge/models/${1##*/}" ;;
        *) echo "$1" ;;
    esac
}

compare_model() {
    local model=$1 name out host_status status summary emulated_model
    name=$(basename "$model" .tflite)
    out="$CACHE/out/$name"
    emulated_model=$(installed_copy "$model")
    [[ -f $emulated_model ]] || die "$name: bundled model missing from the installed wheel ($emulated_model)"
    mkdir -p "$out"
    host_status=$(classify host "$model" "$out/host.jsonl") || exit 1
    for core in "${CORES[@]}"; do
        status=$(classify "$core" "$emulated_model" "$out/$core.jsonl") || exit 1
        [[ $status == "$host_status" ]] || die "$name on $core: exit status $status, host $host_status (stderr: $out/$core.jsonl.err)"
        summary=$(host_py compare "$model" "$out/host.jsonl" "$out/$core.jsonl") || exit 1
        say "$name on $core: $summary; exit status $status as on the host"
    done
}

# `edge-classify serve` under emulation as a Pi 4 on 127.0.0.1: one upload of the first scan
# must give the record the host's CLI printed for it (same comparison as above).
check_server() {
    local model=$1 name out port status=0 summary
    name=$(basename "$model" .tflite)
    out="$CACHE/out/$name"
    port=$(bounded "$PYTHON" "$HERE/pi_serve.py" freeport)
    emulated_argv cortex-a72
    timeout --kill-after=10 "$STEP_TIMEOUT" "${EMULATED[@]}" "$CACHE/site/bin/edge-classify" \
        serve --host 127.0.0.1 --port "$port" --model "$(installed_copy "$model")" \
        >"$out/serve.log" 2>&1 &
    SERVER_PID=$!
    bounded "$PYTHON" "$HERE/pi_serve.py" post "$port" "${SCANS[0]}" --wait "$STEP_TIMEOUT" \
        --pid "$SERVER_PID" >"$out/served.jsonl" || status=$?
    stop_server || die "$name: the emulated server did not stop cleanly (log: $out/serve.log)"
    ((status == 0)) || die "$name: the emulated server did not classify an upload (log: $out/serve.log)"
    head -n 1 "$out/host.jsonl" >"$out/host-first.jsonl"
    summary=$(host_py compare "$model" "$out/host-first.jsonl" "$out/served.jsonl") || exit 1
    say "$name served on cortex-a72 (edge-classify serve, POST /v1/classify): $summary"
}

# SIGTERM (background jobs ignore SIGINT): timeout passes it on, uvicorn shuts down
# gracefully and then ends by that same signal (status 143), as a service should.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID status=0
    SERVER_PID=
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || status=$?
    [[ $status -eq 0 || $status -eq 143 ]]
}

# Medians of single-threaded invokes of one scan, side by side in one run. Emulated figures
# mean something only as ratios (qemu translates every instruction), never as device latency.
report_timing() {
    local scan="${SCANS[0]}" model target median table="$CACHE/out/timing.tsv"
    say "timing: median of $TIMING_REPEATS single-threaded invokes after 1 warm-up; EMULATION, NOT A DEVICE"
    : > "$table"
    for model in "${MODELS[@]}"; do
        median=$(host_py time "$model" "$scan" --repeats "$TIMING_REPEATS") || exit 1
        printf '%s\thost\t%s\n' "$(basename "$model" .tflite)" "$median" >> "$table"
        for target in "${CORES[@]}"; do
            median=$(emulated_python "$target" "$HERE/pi_check.py" time "$model" "$scan" \
                --repeats "$TIMING_REPEATS" 2>/dev/null) || die "timing $model on $target failed"
            printf '%s\t%s\t%s\n' "$(basename "$model" .tflite)" "$target" "$median" >> "$table"
        done
    done
    awk -F'\t' '
        { ms[$1, $2] = $3; if (!($1 in seen)) { seen[$1]; models[++n] = $1 } }
        END {
            first = models[1]
            for (i = 1; i <= n; i++) {
                m = models[i]; host = ms[m, "host"]
                printf "pi-check:   %s: x86_64 host %.3g ms; emulated/host: cortex-a72 %.1fx, cortex-a76 %.1fx", \
                    m, host, ms[m, "cortex-a72"] / host, ms[m, "cortex-a76"] / host
                if (i > 1) printf "; vs %s: host %.2fx, cortex-a72 %.2fx, cortex-a76 %.2fx", first, \
                    host / ms[first, "host"], ms[m, "cortex-a72"] / ms[first, "cortex-a72"], \
                    ms[m, "cortex-a76"] / ms[first, "cortex-a76"]
                printf "\n"
            }
        }' "$table" >&2
}

main() {
    local started=$SECONDS
    parse_arguments "$@"
    check_host
    mkdir -p "$CACHE/home"
    write_apt_sources
    build_root
    find_qemu
    host_py constraints > "$CACHE/constraints.txt"
    local key
    key=$(install_key)
    if [[ -f "$CACHE/site/bin/edge-classify" && -d "$CACHE/site/fastapi" \
          && $(cat "$CACHE/site/.lungcnn-key" 2>/dev/null) == "$key" ]]; then
        say "install: cached in $CACHE/site (checkout, pins and root unchanged)"
    else
        download_wheels
        install_emulated
        echo "$key" > "$CACHE/site/.lungcnn-key"
    fi
    pick_scans
    say "classifying ${#SCANS[@]} files with ${#MODELS[@]} model(s) on the host and on ${CORES[*]}"
    for model in "${MODELS[@]}"; do compare_model "$model"; done
    check_server "${MODELS[0]}"
    [[ $TIMING -eq 0 ]] || report_timing
    say "OK: arm64 (Raspberry Pi 4 and 5 cores, emulated) matches the x86_64 host, served too, in $((SECONDS - started)) s"
}

main "$@"
