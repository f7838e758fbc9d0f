# Shared by scripts/run, scripts/test and scripts/bench. Source it; it defines functions only.

# Swift lives in /opt/swift on these machines; make sure it is on PATH even in a bare environment.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="$PATH:/opt/swift/usr/bin"
fi

tether_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once, first).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    tether_log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Debian packages Tether builds, tests and runs with.
TETHER_PACKAGES=(libhiredis-dev libssl-dev redis-server redis-tools)
# And those only the tests need: nginx in front of several gateways (config/nginx.conf; scripts/chaos too),
# prometheus_client, whose text-format parser reads /metrics in MetricsTests, and headless Chromium with its
# WebDriver for the playground (scripts/playground_test.py).
TETHER_TEST_PACKAGES=(nginx python3-prometheus-client chromium chromium-driver)

# free_port: prints a TCP port nobody listens on at 127.0.0.1.
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( (RANDOM % 12000) + 20000 ))  # below the ephemeral range (32768+), so no outgoing connection holds it
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# start_redis DIR: starts a throwaway redis-server on a free loopback port with DIR as its home (no persistence),
# waits until it answers, and sets TETHER_REDIS_PORT and TETHER_REDIS_PID. Stop it with stop_redis.
start_redis() {
    local dir=$1
    mkdir -p "$dir"
    for _ in 1 2 3 4 5; do
        TETHER_REDIS_PORT=$(free_port)
        redis-server --port "$TETHER_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
        TETHER_REDIS_PID=$!
        for _ in $(seq 1 100); do
            if redis-cli -p "$TETHER_REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
                return 0
            fi
            kill -0 "$TETHER_REDIS_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill "$TETHER_REDIS_PID" 2>/dev/null
        wait "$TETHER_REDIS_PID" 2>/dev/null
    done
    echo "redis-server did not start; see $dir/redis.log" >&2
    return 1
}

stop_redis() {
    if [ -n "${TETHER_REDIS_PID:-}" ]; then
        kill "$TETHER_REDIS_PID" 2>/dev/null || true
        # A killed server's status is not a failure (callers run under set -e, often from a trap).
        wait "$TETHER_REDIS_PID" 2>/dev/null || true
        TETHER_REDIS_PID=""
    fi
}
