# Sourced by the benchmarks: nginx as a reference HTTP server.
#
# nginx_start DIR QSNAP_URL [ACCESS_LOG]
#   Saves qsnap's GET /metrics and GET /healthz answers as the files metrics
#   and healthz under DIR/www and starts nginx (Debian's, as a non-daemon
#   child of the calling shell: one worker, keep-alive 75 s / 1000 requests,
#   sendfile, access log off unless ACCESS_LOG is a path, minimal
#   configuration in DIR) serving them on a random loopback port. Its worker
#   may run as another user: the directories above DIR must be searchable.
#   Sets NGINX_PID, NGINX_URL and NGINX_VERSION; returns non-zero when nginx
#   did not start.
# nginx_stop
#   Stops it (graceful QUIT) and waits for it.
# proc_ticks PID
#   utime + stime (clock ticks) of PID and its child processes, from
#   /proc/PID/stat (for nginx: master and worker).

nginx_start() {
    local dir=$1 qurl=$2 access_log=${3:-off} bin port
    bin=$(command -v nginx || echo /usr/sbin/nginx)
    [ -x "$bin" ] || { echo "nginx is not installed (scripts/install-deps.sh bench)" >&2; return 1; }
    mkdir -p "$dir/www" "$dir/tmp"
    curl -sf "$qurl/metrics" -o "$dir/www/metrics" || return 1
    curl -sf "$qurl/healthz" -o "$dir/www/healthz" || return 1
    # the worker may run as another user: it must read the files
    chmod 755 "$dir" "$dir/www"
    chmod 644 "$dir/www/metrics" "$dir/www/healthz"
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log $access_log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
    }
}
CONF
    "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    NGINX_URL="http://127.0.0.1:$port"
    NGINX_VERSION=$("$bin" -v 2>&1 | sed 's/.*nginx\///')
    local _
    for _ in $(seq 100); do curl -sf "$NGINX_URL/healthz" -o /dev/null && return 0; sleep 0.1; done
    cat "$dir/nginx.out" "$dir/nginx-error.log" >&2
    return 1
}

nginx_stop() {
    [ -n "${NGINX_PID:-}" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    NGINX_PID=""
}

proc_ticks() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        [ -r "/proc/$p/stat" ] || continue
        # the fields after the command name, which may contain spaces
        t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
