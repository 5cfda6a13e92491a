#!/usr/bin/env bash
# make_captures.sh - record real PROXY-protocol traffic for proxydiag's tests.
#
# Starts HAProxy 2.6, nginx 1.22 (stream), Postfix 3.7 and Dovecot 2.3 from
# throw-away configs in a temp dir, on loopback addresses only, drives real
# client sessions (swaks, curl) through them, records each situation with
# tcpdump / dumpcap and writes the captures plus manifest.json.
#
# Usage (as root, Debian 12):  captures/make_captures.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to the directory of this script.
#   KEEP_WORK=1 keeps the temp dir (configs, daemon logs, client logs).
#
# Address plan: clients 127.0.0.10 (IPv6 scenario: ::1) -> proxies 127.0.0.20
# -> servers 127.0.0.30; 127.0.0.21 is the second proxy of a chain and 127.0.0.15
# an L4 relay. Nothing ever talks to a non-loopback address.
set -euo pipefail

START_TS=$(date +%s)
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${1:-$SCRIPT_DIR}

CLIENT=127.0.0.10
PROXY=127.0.0.20
PROXY2=127.0.0.21     # second proxy of a chain
L4BAL=127.0.0.15      # L4 relay (no PROXY support) in front of a proxy
SERVER=127.0.0.30
USER_NAME='alice@example.test'
USER_PASS='Tr0ub4dor&3xample'

log() { printf '[make_captures %3ss] %s\n' "$(($(date +%s) - START_TS))" "$*" >&2; }
die() {
    printf '\nmake_captures: ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (tcpdump, daemons on privileged setups, apt-get)"

# --------------------------------------------------------------------------
# Step A. Install what is missing (apt-get update once, then one install).
# --------------------------------------------------------------------------
PKGS=(haproxy nginx libnginx-mod-stream postfix dovecot-imapd dovecot-pop3d
      tcpdump tshark swaks curl openssl socat)
need_install=0
for c in haproxy nginx postfix postconf dovecot doveadm tcpdump tshark dumpcap \
         capinfos swaks curl openssl socat timeout; do
    command -v "$c" >/dev/null 2>&1 || { need_install=1; log "missing command: $c"; }
done
for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib/dovecot/imap \
         /usr/lib/dovecot/pop3 /usr/lib/dovecot/imap-login /usr/lib/dovecot/pop3-login; do
    [ -e "$f" ] || { need_install=1; log "missing file: $f"; }
done
if [ "$need_install" = 1 ]; then
    log "installing: ${PKGS[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null || die "apt-get update failed"
    apt-get install -y "${PKGS[@]}" </dev/null || die "apt-get install failed"
else
    log "all required commands present, skipping apt-get"
fi

# --------------------------------------------------------------------------
# Step B. Stop system instances that apt may have auto-started (never touch their
#    configs); only through their own service manager / control commands.
# --------------------------------------------------------------------------
stop_system_service() {
    local svc=$1
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl is-active --quiet "$svc" 2>/dev/null; then
            log "stopping system $svc (systemctl)"
            systemctl stop "$svc" || die "could not stop system $svc"
        fi
    elif [ -x "/etc/init.d/$svc" ]; then
        if "/etc/init.d/$svc" status >/dev/null 2>&1; then
            log "stopping system $svc (/etc/init.d)"
            "/etc/init.d/$svc" stop </dev/null >/dev/null 2>&1 || die "could not stop system $svc"
        fi
    fi
}
for svc in postfix dovecot nginx haproxy; do stop_system_service "$svc"; done
# Postfix's default instance, if it still runs (e.g. started by hand).
if postfix status >/dev/null 2>&1; then
    log "stopping the system's default Postfix instance"
    postfix stop >/dev/null 2>&1 || true
fi

# --------------------------------------------------------------------------
# Helpers: LISTEN check from /proc (no iproute2 needed, no probe connection).
# --------------------------------------------------------------------------
hex_port() { printf '%04X' "$1"; }
hex_ipv4() { local IFS=.; set -- $1; printf '%02X%02X%02X%02X' "$4" "$3" "$2" "$1"; }
# is_listening ADDR PORT   (ADDR: dotted IPv4 or ::1)
is_listening() {
    local addr=$1 port pat
    port=$(hex_port "$2")
    if [ "$addr" = "::1" ]; then
        pat="00000000000000000000000001000000:$port"
        awk -v p="$pat" '$2 == p && $4 == "0A" {f=1} END {exit !f}' /proc/net/tcp6
    else
        pat="$(hex_ipv4 "$addr"):$port"
        awk -v p="$pat" -v any="00000000:$port" '($2 == p || $2 == any) && $4 == "0A" {f=1} END {exit !f}' /proc/net/tcp
    fi
}
wait_listening() { # NAME ADDR PORT [LOGFILE]
    local i
    for i in $(seq 1 100); do
        is_listening "$2" "$3" && return 0
        sleep 0.1
    done
    [ -n "${4:-}" ] && [ -f "$4" ] && tail -n 20 "$4" >&2
    die "$1 is not listening on $2:$3 after 10 s"
}

SERVER_PORTS=(10025 2525 10143 10110 1143)
PROXY_PORTS=(20025 21025 20465 20466 20467 20468 20143 20993 20110 22025 22143 23025
             24025 24026 24143 25025 25027 30025 30026 30143)
for p in "${SERVER_PORTS[@]}"; do
    is_listening "$SERVER" "$p" && die "port $SERVER:$p is already in use (a previous run still alive?)"
done
for p in "${PROXY_PORTS[@]}"; do
    is_listening "$PROXY" "$p" && die "port $PROXY:$p is already in use (a previous run still alive?)"
done
is_listening ::1 21025 && die "port [::1]:21025 is already in use"
is_listening "$PROXY2" 25026 && die "port $PROXY2:25026 is already in use"
is_listening "$L4BAL" 40025 && die "port $L4BAL:40025 is already in use"

# --------------------------------------------------------------------------
# Step C. Temp dir, cleanup trap.
# --------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/proxydiag-captures.XXXXXX)
chmod 755 "$WORK"     # Dovecot/Postfix children (nobody, dovenull, postfix) must traverse it
mkdir -p "$WORK/out" "$WORK/logs"
PIDS=()               # every background process we started
PF_STARTED=0
CAP_PID=""

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$CAP_PID" ]; then kill -INT "$CAP_PID" 2>/dev/null; fi
    if [ "$PF_STARTED" = 1 ]; then
        postfix -c "$WORK/postfix" stop >/dev/null 2>&1
        local mpid
        mpid=$(sed -n 1p "$WORK/postfix-queue/pid/master.pid" 2>/dev/null | tr -d ' ')
        if [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null; then kill -KILL "$mpid" 2>/dev/null; fi
    fi
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    local i
    for i in $(seq 1 30); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$rc" != 0 ]; then
        printf 'make_captures: failed (exit %s); logs in %s/logs\n' "$rc" "$WORK" >&2
    elif [ "${KEEP_WORK:-0}" = 1 ]; then
        printf 'make_captures: work dir kept: %s\n' "$WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
# Step D. Certificate (self-signed, CN mail.example.test).
# --------------------------------------------------------------------------
log "generating self-signed certificate"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    -subj "/CN=mail.example.test" -addext "subjectAltName=DNS:mail.example.test" \
    >"$WORK/logs/openssl.log" 2>&1 || die "openssl could not create the certificate"
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
chmod 644 "$WORK/key.pem"   # throw-away key; Dovecot/Postfix read it after dropping privileges

# --------------------------------------------------------------------------
# Step E. Dovecot 2.3 (IMAP 10143 + POP3 10110 with haproxy=yes, plain IMAP 1143;
#    also the SASL socket Postfix authenticates against).
# --------------------------------------------------------------------------
DV=$WORK/dovecot
mkdir -p "$DV/base" "$DV/state" "$DV/mail"
chown nobody:nogroup "$DV/mail"
printf '%s:{PLAIN}%s:65534:65534::%s/mail/alice::\n' "$USER_NAME" "$USER_PASS" "$DV" >"$DV/passwd"
chmod 644 "$DV/passwd"
cat >"$DV/dovecot.conf" <<EOF
# throw-away Dovecot config for proxydiag captures
protocols = imap pop3
listen = $SERVER
base_dir = $DV/base
state_dir = $DV/state
instance_name = proxydiag-captures
log_path = $WORK/logs/dovecot.log
info_log_path = $WORK/logs/dovecot.log
auth_verbose = yes
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1000
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <$WORK/cert.pem
ssl_key = <$WORK/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
haproxy_trusted_networks = $PROXY
haproxy_timeout = 3 secs
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DV/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $DV/passwd
}
service imap-login {
  inet_listener imap {
    address = $SERVER
    port = 1143
  }
  inet_listener imap_haproxy {
    address = $SERVER
    port = 10143
    haproxy = yes
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
  inet_listener pop3_haproxy {
    address = $SERVER
    port = 10110
    haproxy = yes
  }
}
service auth {
  unix_listener auth-userdb {
    mode = 0600
  }
  unix_listener $WORK/dovecot-auth-postfix {
    mode = 0666
  }
}
protocol pop3 {
  pop3_uidl_format = %08Xu%08Xv
}
EOF
[ -f /usr/share/dovecot/dh.pem ] || sed -i '/^ssl_dh/d' "$DV/dovecot.conf"
log "starting Dovecot"
dovecot -c "$DV/dovecot.conf" -F >"$WORK/logs/dovecot.stdout" 2>&1 </dev/null &
PIDS+=($!)
wait_listening dovecot "$SERVER" 10143 "$WORK/logs/dovecot.stdout"
wait_listening dovecot "$SERVER" 10110 "$WORK/logs/dovecot.log"
wait_listening dovecot "$SERVER" 1143 "$WORK/logs/dovecot.log"

# --------------------------------------------------------------------------
# Step F. Postfix 3.7: 10025 expects a PROXY header, 2525 does not. Mail for
#    example.test is accepted and discarded.
# --------------------------------------------------------------------------
PF=$WORK/postfix
mkdir -p "$PF" "$WORK/postfix-queue" "$WORK/postfix-data"
chown postfix "$WORK/postfix-data"
cat >"$PF/main.cf" <<EOF
# throw-away Postfix config for proxydiag captures
compatibility_level = 3.6
queue_directory = $WORK/postfix-queue
data_directory = $WORK/postfix-data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = \$myhostname
mydestination =
relay_domains = example.test
mynetworks = 127.0.0.0/8 [::1]/128
inet_interfaces = loopback-only
inet_protocols = all
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
alias_maps =
alias_database =
append_dot_mydomain = no
biff = no
smtpd_peername_lookup = no
smtpd_relay_restrictions = reject_unauth_destination
smtpd_banner = \$myhostname ESMTP Postfix
smtpd_tls_security_level = may
smtpd_tls_cert_file = $WORK/cert.pem
smtpd_tls_key_file = $WORK/key.pem
smtpd_tls_auth_only = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $WORK/dovecot-auth-postfix
maillog_file = $WORK/logs/postfix.log
maillog_file_prefixes = $WORK
EOF
cat >"$PF/master.cf" <<EOF
# service        type  priv unpriv chroot wakeup maxproc command
$SERVER:10025 inet  n     -      n      -      -       smtpd -o smtpd_upstream_proxy_protocol=haproxy
$SERVER:2525  inet  n     -      n      -      -       smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
tlsmgr    unix  - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
EOF
log "starting Postfix"
postfix -c "$PF" check >"$WORK/logs/postfix-start.log" 2>&1 || { cat "$WORK/logs/postfix-start.log" >&2; die "postfix check failed for $PF"; }
PF_STARTED=1
postfix -c "$PF" start >>"$WORK/logs/postfix-start.log" 2>&1 || {
    cat "$WORK/logs/postfix-start.log" "$WORK/logs/postfix.log" >&2 2>/dev/null
    die "Postfix did not start (config $PF)"
}
wait_listening postfix "$SERVER" 10025 "$WORK/logs/postfix.log"
wait_listening postfix "$SERVER" 2525 "$WORK/logs/postfix.log"

# --------------------------------------------------------------------------
# Step G. HAProxy 2.6 (mode tcp). Health-checked backend lives in a second
#    instance that only runs during the health-check capture, so its
#    LOCAL-header probes do not show up in the other captures.
# --------------------------------------------------------------------------
HA=$WORK/haproxy
mkdir -p "$HA"
cat >"$HA/haproxy.cfg" <<EOF
# throw-away HAProxy config for proxydiag captures
global
    log stdout format raw local0 info
    maxconn 256

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    source $PROXY

# 1. v1 header to Postfix
listen smtp_v1
    bind $PROXY:20025
    server postfix $SERVER:10025 send-proxy

# 2. v2 header to Postfix
listen smtp_v2
    bind $PROXY:21025
    server postfix $SERVER:10025 send-proxy-v2

# 3. implicit TLS terminated by HAProxy, v2 + SSL TLV to Postfix
listen smtps_v2ssl
    bind $PROXY:20465 ssl crt $WORK/haproxy.pem
    server postfix $SERVER:10025 send-proxy-v2-ssl

# 4. IMAP / IMAPS / POP3 to Dovecot
listen imap_v2
    bind $PROXY:20143
    server dovecot $SERVER:10143 send-proxy-v2

listen imaps_v2ssl
    bind $PROXY:20993 ssl crt $WORK/haproxy.pem
    server dovecot $SERVER:10143 send-proxy-v2-ssl

listen pop3_v2
    bind $PROXY:20110
    server dovecot $SERVER:10110 send-proxy-v2

# 6. IPv6 client -> IPv4 server (TCP6 header)
listen smtp_v2_ipv6
    bind [::1]:21025
    server postfix $SERVER:10025 send-proxy-v2

# 11. mistakes
listen mistake_header_to_plain_listener
    bind $PROXY:22025
    server postfix $SERVER:2525 send-proxy-v2

listen mistake_no_header_to_proxy_listener
    bind $PROXY:23025
    server postfix $SERVER:10025

listen mistake_v1_behind_tls
    bind $PROXY:20466 ssl crt $WORK/haproxy.pem
    server postfix $SERVER:10025 send-proxy

listen mistake_tls_terminated_no_ssl_tlv
    bind $PROXY:20467 ssl crt $WORK/haproxy.pem
    server postfix $SERVER:10025 send-proxy-v2

listen mistake_tls_passthrough_to_plain
    bind $PROXY:20468
    server postfix $SERVER:10025 send-proxy-v2

listen mistake_header_to_plain_imap
    bind $PROXY:22143
    server dovecot $SERVER:1143 send-proxy-v2

# Two proxies in a chain that both send a header: A ($PROXY) -> B ($PROXY2, whose
# bind has no accept-proxy) -> Postfix.
listen mistake_chain_a
    bind $PROXY:25025
    server proxy_b $PROXY2:25026 send-proxy-v2

listen mistake_chain_b
    bind $PROXY2:25026
    source $PROXY2
    server postfix $SERVER:10025 send-proxy-v2

# Behind an L4 relay without PROXY support (nginx stream on $L4BAL:40025).
listen mistake_behind_l4_relay
    bind $PROXY:25027
    server postfix $SERVER:10025 send-proxy-v2
EOF
cat >"$HA/haproxy-checks.cfg" <<EOF
# second HAProxy instance: only the health-checked backend (LOCAL headers)
global
    log stdout format raw local0 info
    maxconn 64

defaults
    mode tcp
    log global
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    source $PROXY

listen smtp_v2_checked
    bind $PROXY:24025
    server postfix $SERVER:10025 send-proxy-v2 check inter 500
EOF
# Third and fourth instances, each running only during its own capture: checks with a
# port of their own (connect only, no header at all) in front of Postfix, and correct
# LOCAL-header checks to Dovecot.
ha_checks_cfg() { # COMMENT LISTEN_BLOCK
    sed -e "s|^# second HAProxy instance.*|# $1|" -e '/^listen /,$d' "$HA/haproxy-checks.cfg"
    printf '%s\n' "$2"
}
ha_checks_cfg "third HAProxy instance: checks with their own port (no header)" "listen smtp_v2_checked_port
    bind $PROXY:24026
    server postfix $SERVER:10025 send-proxy-v2 check port 10025 inter 300" >"$HA/haproxy-checks-port.cfg"
ha_checks_cfg "fourth HAProxy instance: LOCAL-header checks to Dovecot (correct setup)" "listen imap_v2_checked
    bind $PROXY:24143
    server dovecot $SERVER:10143 send-proxy-v2 check inter 500" >"$HA/haproxy-checks-imap.cfg"
haproxy -c -f "$HA/haproxy.cfg" >"$WORK/logs/haproxy-check.log" 2>&1 || { cat "$WORK/logs/haproxy-check.log" >&2; die "HAProxy rejected $HA/haproxy.cfg"; }
for cfg in haproxy-checks.cfg haproxy-checks-port.cfg haproxy-checks-imap.cfg; do
    haproxy -c -f "$HA/$cfg" >>"$WORK/logs/haproxy-check.log" 2>&1 || { cat "$WORK/logs/haproxy-check.log" >&2; die "HAProxy rejected $HA/$cfg"; }
done
log "starting HAProxy"
haproxy -db -f "$HA/haproxy.cfg" >"$WORK/logs/haproxy.log" 2>&1 </dev/null &
PIDS+=($!)
wait_listening haproxy "$PROXY" 20025 "$WORK/logs/haproxy.log"
for p in 21025 20465 20466 20467 20468 20143 20993 20110 22025 22143 23025 25025 25027; do
    wait_listening haproxy "$PROXY" "$p" "$WORK/logs/haproxy.log"
done
wait_listening haproxy "$PROXY2" 25026 "$WORK/logs/haproxy.log"
wait_listening haproxy ::1 21025 "$WORK/logs/haproxy.log"

# --------------------------------------------------------------------------
# Step H. nginx 1.22 stream: proxy_protocol on (v1) to Postfix and Dovecot; one
#    server that wrongly expects a header from clients; a plain L4 relay.
# --------------------------------------------------------------------------
NG=$WORK/nginx
mkdir -p "$NG"
cat >"$NG/nginx.conf" <<EOF
# throw-away nginx config for proxydiag captures
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid $NG/nginx.pid;
error_log $WORK/logs/nginx-error.log info;
events { worker_connections 64; }
stream {
    log_format basic '\$remote_addr:\$remote_port -> \$upstream_addr \$status \$bytes_sent/\$bytes_received \$session_time';
    access_log $WORK/logs/nginx-access.log basic;
    proxy_connect_timeout 3s;
    proxy_timeout 30s;
    server {
        listen $PROXY:30025;
        proxy_pass $SERVER:10025;
        proxy_bind $PROXY;
        proxy_protocol on;
    }
    server {
        listen $PROXY:30143;
        proxy_pass $SERVER:10143;
        proxy_bind $PROXY;
        proxy_protocol on;
    }
    # mistake: "listen ... proxy_protocol" makes nginx expect a header from the client
    server {
        listen $PROXY:30026 proxy_protocol;
        proxy_pass $SERVER:10025;
        proxy_bind $PROXY;
        proxy_protocol on;
    }
    # a plain L4 relay (no PROXY protocol) in front of HAProxy
    server {
        listen $L4BAL:40025;
        proxy_pass $PROXY:25027;
        proxy_bind $L4BAL;
    }
}
EOF
nginx -t -p "$NG/" -e "$WORK/logs/nginx-error.log" -c "$NG/nginx.conf" >"$WORK/logs/nginx-check.log" 2>&1 \
    || { cat "$WORK/logs/nginx-check.log" >&2; die "nginx rejected $NG/nginx.conf"; }
log "starting nginx"
nginx -p "$NG/" -e "$WORK/logs/nginx-error.log" -c "$NG/nginx.conf" -g 'daemon off;' \
    >"$WORK/logs/nginx.stdout" 2>&1 </dev/null &
PIDS+=($!)
wait_listening nginx "$PROXY" 30025 "$WORK/logs/nginx-error.log"
wait_listening nginx "$PROXY" 30143 "$WORK/logs/nginx-error.log"
wait_listening nginx "$PROXY" 30026 "$WORK/logs/nginx-error.log"
wait_listening nginx "$L4BAL" 40025 "$WORK/logs/nginx-error.log"

# --------------------------------------------------------------------------
# Capture and client helpers.
# --------------------------------------------------------------------------
CAP_FILE=""
CAP_ERR=""
cap_wait_ready() { # PATTERN
    local i
    for i in $(seq 1 100); do
        grep -q "$1" "$CAP_ERR" 2>/dev/null && return 0
        kill -0 "$CAP_PID" 2>/dev/null || { cat "$CAP_ERR" >&2; die "capture for $CAP_FILE exited early"; }
        sleep 0.1
    done
    cat "$CAP_ERR" >&2
    die "capture for $CAP_FILE did not start within 10 s"
}
# cap_start FILE IFACE FILTER [extra tcpdump options...]
cap_start() {
    CAP_FILE=$1; local iface=$2 filter=$3; shift 3
    CAP_ERR=$WORK/logs/$CAP_FILE.capture.log
    log "capturing $CAP_FILE"
    tcpdump -i "$iface" -s 0 -B 65536 -U --immediate-mode -Z root -w "$WORK/out/$CAP_FILE" "$@" "$filter" >"$CAP_ERR" 2>&1 </dev/null &
    CAP_PID=$!
    cap_wait_ready "listening on"
}
# cap_start_dumpcap FILE FILTER IFACE...
cap_start_dumpcap() {
    CAP_FILE=$1; local filter=$2; shift 2
    CAP_ERR=$WORK/logs/$CAP_FILE.capture.log
    local args=() i
    for i in "$@"; do args+=(-i "$i" -f "$filter"); done
    log "capturing $CAP_FILE (dumpcap)"
    dumpcap -n -B 64 "${args[@]}" -w "$WORK/out/$CAP_FILE" >"$CAP_ERR" 2>&1 </dev/null &
    CAP_PID=$!
    cap_wait_ready "Capturing on"
}
cap_stop() {
    # tcpdump runs in immediate mode; dumpcap delivers every 250 ms or so.
    if [ "${CAP_FILE##*.}" = pcapng ]; then sleep 1.5; else sleep 0.5; fi
    kill -INT "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    CAP_PID=""
    [ -s "$WORK/out/$CAP_FILE" ] || die "capture $CAP_FILE is empty or missing"
    # Kernel drops (tcpdump: "N packets dropped by kernel"; dumpcap:
    # "Packets received/dropped on interface 'x': R/D ...").
    CAP_DROPPED=$(awk '
        /packets dropped by kernel/ { d += $1 }
        /received\/dropped on interface/ {
            if (match($0, /: [0-9]+\/[0-9]+ /)) { split(substr($0, RSTART + 2, RLENGTH - 3), a, "/"); d += a[2] }
        }
        END { print d + 0 }' "$CAP_ERR")
}
# run_scenario FUNCTION: runs it again (up to 3 times) when the capture lost packets.
run_scenario() {
    local try
    for try in 1 2 3; do
        "$1"
        [ "$CAP_DROPPED" = 0 ] && return 0
        log "$CAP_FILE: $CAP_DROPPED packets dropped by the kernel, recording again"
    done
    die "$CAP_FILE: the capture keeps dropping packets ($CAP_DROPPED)"
}

CLIENT_LOG=$WORK/logs/clients.log
# swaks_run EXPECT(ok|fail) LABEL [swaks args...]   (server/port/bind in args)
swaks_run() {
    local expect=$1 label=$2 rc=0; shift 2
    printf '\n===== swaks %s (%s) =====\n' "$label" "$expect" >>"$CLIENT_LOG"
    timeout 30 swaks --ehlo client.example.test --from sender@example.net \
        --to "rcpt@example.test" --h-Subject "proxydiag capture: $label" \
        --body "proxydiag capture: $label" "$@" >>"$CLIENT_LOG" 2>&1 </dev/null || rc=$?
    if [ "$expect" = ok ] && [ "$rc" != 0 ]; then
        tail -n 25 "$CLIENT_LOG" >&2
        die "swaks session '$label' failed (exit $rc)"
    fi
    if [ "$expect" = fail ] && [ "$rc" = 0 ]; then
        tail -n 25 "$CLIENT_LOG" >&2
        die "swaks session '$label' succeeded but should have failed"
    fi
    return 0
}
smtp_via() { # EXPECT LABEL PORT [extra swaks args]
    local expect=$1 label=$2 port=$3; shift 3
    swaks_run "$expect" "$label" --server "$PROXY" --port "$port" --local-interface "$CLIENT" --timeout 10 "$@"
}
AUTH_ARGS=(--auth PLAIN --auth-user "$USER_NAME" --auth-password "$USER_PASS")
# curl_try EXPECT(ok|fail|any) LABEL URL [extra curl args]
curl_try() {
    local expect=$1 label=$2 url=$3 rc=0; shift 3
    printf '\n===== curl %s (%s) =====\n' "$label" "$expect" >>"$CLIENT_LOG"
    timeout 30 curl -sS -v --max-time 20 --interface "$CLIENT" --user "$USER_NAME:$USER_PASS" \
        "$@" "$url" >>"$CLIENT_LOG" 2>&1 </dev/null || rc=$?
    printf '===== curl exit %s\n' "$rc" >>"$CLIENT_LOG"
    if [ "$expect" = ok ] && [ "$rc" != 0 ]; then
        tail -n 25 "$CLIENT_LOG" >&2
        die "curl session '$label' ($url) failed (exit $rc)"
    fi
    if [ "$expect" = fail ] && [ "$rc" = 0 ]; then
        tail -n 25 "$CLIENT_LOG" >&2
        die "curl session '$label' ($url) succeeded but should have failed"
    fi
    return 0
}
curl_run() { curl_try ok "$@"; } # LABEL URL [extra curl args]

# Crafted PROXY headers that no real proxy sends, over a real TCP connection from the
# client address to Postfix 10025 (which expects a header), then EHLO and QUIT.
# Standalone (no proxydiag import): the header bytes are written out here.
CRAFT_PY=$WORK/craft_client.py
cat >"$CRAFT_PY" <<'PY'
import socket, struct, sys, time

mode, src, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
addrs = socket.inet_aton("203.0.113.7") + socket.inet_aton(host) + struct.pack("!HH", 40000, port)
if mode == "malformed-v1":      # leading zero in the destination port
    pieces = [b"PROXY TCP4 203.0.113.7 %s 40000 070\r\n" % host.encode()]
elif mode == "crc32c-mismatch":  # CRC32C TLV with a wrong checksum
    body = addrs + b"\x03\x00\x04" + struct.pack("!I", 0xDEADBEEF)
    header = SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body
    right = crc32c(header[:-4] + b"\0\0\0\0")
    assert right != 0xDEADBEEF
    print("CRC32C sent 0xDEADBEEF, correct value 0x%08X" % right)
    pieces = [header]
elif mode == "split":            # valid v2 header in two segments, 200 ms apart
    header = SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs
    pieces = [header[:16], header[16:]]
else:
    sys.exit("unknown mode " + mode)

s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.bind((src, 0))
s.settimeout(3)
s.connect((host, port))
try:
    for i, piece in enumerate(pieces):
        if i:
            time.sleep(0.2)
        s.sendall(piece)
        print(">> %r" % piece)
except ConnectionError as e:   # the server gave up on a partial header
    print("!! %s while sending %r" % (e, piece))

buf = b""
def reply():
    # one SMTP reply (up to its last line), or whatever came before EOF / timeout
    global buf
    while True:
        lines = buf.split(b"\r\n")
        for n, line in enumerate(lines[:-1]):
            if len(line) >= 4 and line[3:4] == b" ":
                out = b"\r\n".join(lines[:n + 1])
                buf = b"\r\n".join(lines[n + 1:])
                print("<< %r" % out)
                return out
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionError) as e:
            print("<< (%s) %r" % (type(e).__name__, buf))
            return None
        if not data:
            print("<< (closed) %r" % buf)
            return None
        buf += data

try:
    if reply() is not None:
        for cmd in (b"EHLO client.example.test\r\n", b"QUIT\r\n"):
            s.sendall(cmd)
            print(">> %r" % cmd)
            if reply() is None:
                break
except ConnectionError as e:
    print("!! %s" % e)
s.close()
PY
# craft_run MODE   (client address -> Postfix 10025)
craft_run() {
    printf '\n===== crafted %s =====\n' "$1" >>"$CLIENT_LOG"
    timeout 15 python3 "$CRAFT_PY" "$1" "$CLIENT" "$SERVER" 10025 >>"$CLIENT_LOG" 2>&1 </dev/null \
        || { tail -n 25 "$CLIENT_LOG" >&2; die "crafted client '$1' failed"; }
}

# --------------------------------------------------------------------------
# Step I. Scenarios.
# --------------------------------------------------------------------------
# Immediate mode (so SIGINT loses nothing) needs a large buffer: with -s 0
# the ring holds only a handful of 256 KiB frames otherwise, and bursts drop.

# 1. HAProxy send-proxy (v1) -> Postfix, two sessions.
sc_v1_smtp() {
    cap_start haproxy-v1-smtp.pcap lo "tcp and (port 20025 or port 10025)"
    smtp_via ok "v1 session 1" 20025
    smtp_via ok "v1 session 2" 20025
    cap_stop
}
# 2. HAProxy send-proxy-v2 -> Postfix: plain, STARTTLS+AUTH, AUTH in clear.
sc_v2_smtp() {
    cap_start haproxy-v2-smtp.pcap lo "tcp and (port 21025 or port 10025)"
    smtp_via ok "v2 plain" 21025
    smtp_via ok "v2 starttls auth" 21025 --tls "${AUTH_ARGS[@]}"
    smtp_via ok "v2 plaintext auth" 21025 "${AUTH_ARGS[@]}"
    cap_stop
}
# 3. HAProxy terminates implicit TLS, send-proxy-v2-ssl -> Postfix.
sc_v2ssl_smtps() {
    cap_start haproxy-v2ssl-smtps.pcap lo "tcp and (port 20465 or port 10025)"
    smtp_via ok "v2-ssl smtps auth" 20465 --tls-on-connect "${AUTH_ARGS[@]}"
    cap_stop
}
# 4. HAProxy -> Dovecot: IMAP (v2), IMAPS terminated by HAProxy (v2-ssl), POP3 (v2).
sc_v2_imap() {
    cap_start haproxy-v2-imap.pcap lo "tcp and (port 20143 or port 20993 or port 20110 or port 10143 or port 10110)"
    curl_run "imap v2" "imap://$PROXY:20143/INBOX"
    curl_run "imaps v2-ssl" "imaps://$PROXY:20993/INBOX" -k
    curl_run "pop3 v2" "pop3://$PROXY:20110/"
    cap_stop
}
# 5. nginx stream proxy_protocol on (v1) -> Postfix and Dovecot.
sc_nginx_v1() {
    cap_start nginx-v1.pcap lo "tcp and (port 30025 or port 30143 or port 10025 or port 10143)"
    smtp_via ok "nginx v1 smtp" 30025
    curl_run "nginx v1 imap" "imap://$PROXY:30143/INBOX"
    cap_stop
}
# 6. IPv6 client ::1 -> HAProxy [::1]:21025 -> Postfix over IPv4 (TCP6 header).
sc_ipv6() {
    cap_start haproxy-ipv6.pcap lo "tcp and (port 21025 or port 10025)"
    swaks_run ok "ipv6 client" --server ::1 --port 21025 --local-interface ::1 --timeout 10
    cap_stop
}
# 8. Scenario 1's traffic on the "any" pseudo-interface (Linux cooked capture).
sc_any_sll2() {
    cap_start any-sll2.pcap any "host $PROXY or host $SERVER"
    smtp_via ok "any v1 session 1" 20025
    smtp_via ok "any v1 session 2" 20025
    cap_stop
}
# 9. pcapng with two interfaces (lo: Ethernet, any: cooked) around one session.
sc_multi_if() {
    cap_start_dumpcap multi-if.pcapng "tcp port 21025 or tcp port 10025" lo any
    smtp_via ok "multi-if v2" 21025
    cap_stop
}
# 10. Nanosecond timestamps.
sc_nanosecond() {
    cap_start nanosecond.pcap lo "tcp and (port 21025 or port 10025)" --time-stamp-precision=nano
    smtp_via ok "nanosecond v2" 21025
    cap_stop
}
# 11a. v2 header to a listener that expects none (Postfix 2525).
sc_header_to_plain() {
    cap_start header-to-plain-listener.pcap lo "tcp and (port 22025 or port 2525)"
    smtp_via fail "header to plain listener" 22025 --timeout 3
    cap_stop
}
# 11b. No header to a listener that expects one: Postfix stays silent.
sc_no_header() {
    cap_start no-header-to-proxy-listener.pcap lo "tcp and (port 23025 or port 10025)"
    smtp_via fail "no header to proxy listener" 23025 --timeout 3
    cap_stop
}
# 11c. v1 header behind HAProxy TLS termination (TLS state lost).
sc_v1_behind_tls() {
    cap_start v1-behind-tls.pcap lo "tcp and (port 20466 or port 10025)"
    smtp_via ok "v1 behind tls" 20466 --tls-on-connect
    cap_stop
}
# 7. Health checks with LOCAL headers (second HAProxy instance, ~3 s).
#    Recorded last on purpose: HAProxy resets each check right after the
#    header, and Postfix 3.7's smtpd then often dies with "fatal:
#    smtpd_peer_hostaddr_to_sockaddr: ... Servname not supported for
#    ai_socktype"; after a few of those master throttles the 10025 service
#    ("bad command startup -- throttling"), which would break any later
#    scenario on that port.
sc_healthchecks() {
    cap_start haproxy-healthchecks.pcap lo "tcp port 10025"
    ha_extra_start haproxy-checks.cfg
    sleep 3
    ha_extra_stop
    cap_stop
}

# An extra HAProxy instance that runs during one capture only (health checks).
HA_EXTRA_PID=""
ha_extra_start() { # CONFIG_FILE (in $HA)
    haproxy -db -f "$HA/$1" >>"$WORK/logs/${1%.cfg}.log" 2>&1 </dev/null &
    HA_EXTRA_PID=$!
    PIDS+=($HA_EXTRA_PID)
}
ha_extra_stop() {
    kill -TERM "$HA_EXTRA_PID" 2>/dev/null || true
    wait "$HA_EXTRA_PID" 2>/dev/null || true
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$HA_EXTRA_PID" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
    HA_EXTRA_PID=""
}
# sleep_until_elapsed START_EPOCH_NS SECONDS: keep a capture running at least that long.
sleep_until_elapsed() {
    local left_ms=$(( $2 * 1000 - ($(date +%s%N) - $1) / 1000000 ))
    [ "$left_ms" -gt 0 ] && sleep "$(printf '%d.%03d' $((left_ms / 1000)) $((left_ms % 1000)))"
    return 0
}

# 12. HAProxy terminates implicit TLS but sends send-proxy-v2 without -ssl.
sc_tls_no_ssl_tlv() {
    cap_start tls-terminated-no-ssl-tlv.pcap lo "tcp and (port 20467 or port 10025)"
    smtp_via ok "tls terminated, v2 without ssl tlv" 20467 --tls-on-connect
    cap_stop
}
# 13. v2 header to Dovecot's plain IMAP listener (1143, no haproxy = yes).
sc_header_to_plain_imap() {
    cap_start header-to-plain-imap.pcap lo "tcp and (port 22143 or port 1143)"
    curl_try any "header to plain imap" "imap://$PROXY:22143/INBOX"
    cap_stop
}
# 14. Two HAProxy proxies in a chain, both sending a header; all three legs.
sc_two_proxies() {
    cap_start two-proxies-both-send.pcap lo "tcp and (port 25025 or port 25026 or port 10025)"
    smtp_via fail "two proxies both send" 25025 --timeout 3
    cap_stop
}
# 15. Checks with a port of their own (connect only, no header) plus one real session.
sc_healthcheck_no_header() {
    cap_start healthcheck-no-header.pcap lo "tcp and (port 24026 or port 10025)"
    local t0
    t0=$(date +%s%N)
    ha_extra_start haproxy-checks-port.cfg
    wait_listening "haproxy (port checks)" "$PROXY" 24026 "$WORK/logs/haproxy-checks-port.log"
    smtp_via ok "behind connect-only checks" 24026
    sleep_until_elapsed "$t0" 2
    ha_extra_stop
    cap_stop
}
# 16. A plain L4 relay (nginx without proxy_protocol) in front of HAProxy: six
#     sessions, every header names the relay.
sc_l4_relay() {
    cap_start l4-balancer-loses-client.pcap lo "tcp and (port 40025 or port 25027 or port 10025)"
    local i
    for i in 1 2 3 4 5 6; do
        swaks_run ok "behind l4 relay $i" --server "$L4BAL" --port 40025 --local-interface "$CLIENT" --timeout 10
    done
    cap_stop
}
# 17. TLS passed through (no ssl on the bind) to Postfix's plaintext listener.
sc_tls_passthrough_plain() {
    cap_start tls-passthrough-to-plain.pcap lo "tcp and (port 20468 or port 10025)"
    smtp_via fail "tls passthrough to plaintext listener" 20468 --tls-on-connect --timeout 3
    cap_stop
}
# 18. Correct: LOCAL-header checks to Dovecot plus two IMAP sessions.
sc_correct_local_checks() {
    cap_start correct-with-local-checks.pcap lo "tcp and (port 24143 or port 10143)"
    local t0
    t0=$(date +%s%N)
    ha_extra_start haproxy-checks-imap.cfg
    wait_listening "haproxy (imap checks)" "$PROXY" 24143 "$WORK/logs/haproxy-checks-imap.log"
    curl_run "imap behind local checks 1" "imap://$PROXY:24143/INBOX"
    curl_run "imap behind local checks 2" "imap://$PROXY:24143/INBOX"
    sleep_until_elapsed "$t0" 2
    ha_extra_stop
    cap_stop
}
# 19. nginx: a correct server (30025) and one with "listen ... proxy_protocol" (30026).
sc_nginx_expects_header() {
    cap_start nginx-expects-header-from-client.pcap lo "tcp and (port 30025 or port 30026 or port 10025)"
    smtp_via ok "nginx correct" 30025
    smtp_via fail "nginx expects a header from the client" 30026 --timeout 2
    cap_stop
}
# 20-22. Crafted headers over real TCP, client -> Postfix 10025 directly.
sc_malformed_v1() {
    cap_start malformed-v1.pcap lo "tcp and host $CLIENT and port 10025"
    craft_run malformed-v1
    cap_stop
}
sc_crc32c_mismatch() {
    cap_start crc32c-mismatch.pcap lo "tcp and host $CLIENT and port 10025"
    craft_run crc32c-mismatch
    cap_stop
}
sc_split_header() {
    cap_start split-header.pcap lo "tcp and host $CLIENT and port 10025"
    craft_run split
    cap_stop
}

for sc in sc_v1_smtp sc_v2_smtp sc_v2ssl_smtps sc_v2_imap sc_nginx_v1 sc_ipv6 \
          sc_any_sll2 sc_multi_if sc_nanosecond sc_header_to_plain sc_no_header \
          sc_v1_behind_tls sc_tls_no_ssl_tlv sc_header_to_plain_imap sc_two_proxies \
          sc_l4_relay sc_tls_passthrough_plain sc_correct_local_checks \
          sc_nginx_expects_header sc_malformed_v1 sc_crc32c_mismatch sc_split_header \
          sc_healthcheck_no_header sc_healthchecks; do
    run_scenario "$sc"
done

# --------------------------------------------------------------------------
# Step J. Verify every back leg with tshark and write manifest.json.
# --------------------------------------------------------------------------
log "verifying captures with tshark"
# back_leg_summary FILE -> lines "server_port header command ssl_tlv src family" per back-leg
# TCP connection: a SYN from a leg source to a leg destination, the pairs given by
# LEGS ("SRC>DST ...", default "$PROXY>$SERVER"; e.g. LEGS="$PROXY>$PROXY2 $PROXY2>$SERVER"
# for a chain of proxies, "$CLIENT>$SERVER" for crafted headers sent by a client). The
# header columns describe the first PROXY header that the leg's source sent on it.
back_leg_summary() {
    local pair pairs=""
    for pair in ${LEGS:-$PROXY>$SERVER}; do
        pairs+="${pairs:+ || }(ip.src == ${pair%%>*} && ip.dst == ${pair##*>})"
    done
    tshark -r "$1" -n -o tcp.try_heuristic_first:TRUE \
        -Y "(tcp.flags.syn == 1 && tcp.flags.ack == 0 && ($pairs)) || proxy" \
        -T fields -E separator='|' -E occurrence=a -E aggregator=, \
        -e tcp.stream -e tcp.flags.syn -e tcp.dstport -e ip.src \
        -e proxy.v1.proto -e proxy.v2.cmd -e proxy.v2.addr_family -e proxy.v2.tlv.type \
        -e proxy.src.ipv4 -e proxy.src.ipv6 2>/dev/null |
    awk -F'|' '
        $2 == "1" { if (!($1 in port)) { port[$1] = $3; from[$1] = $4; order[++n] = $1 } next }
        ($1 in port) && $4 == from[$1] && !($1 in hdr) {
            if ($5 != "") { h = "v1"; c = "PROXY"; fam = $5; ssl = "false" }
            else {
                h = "v2"; c = ($6 == "1" || $6 == "0x1" || $6 == "0x01") ? "PROXY" : "LOCAL"
                fam = ($7 == "0x1" || $7 == "1" || $7 == "0x01") ? "TCP4" : (($7 == "0x2" || $7 == "2" || $7 == "0x02") ? "TCP6" : "UNSPEC")
                ssl = ($8 ~ /(^|,)(0x20|32)(,|$)/) ? "true" : "false"
            }
            src = ($9 != "") ? $9 : (($10 != "") ? $10 : "null")
            if (c == "LOCAL") src = "null"
            hdr[$1] = h " " c " " ssl " " src " " fam
        }
        END { for (i = 1; i <= n; i++) { s = order[i]; print port[s] " " ((s in hdr) ? hdr[s] : "none null false null null") } }'
}

MANIFEST_ENTRIES=()
VERIFY_LOG=$WORK/logs/verify.log
: >"$VERIFY_LOG"

# Byte-level facts that the header columns above cannot express (the scenario notes
# rely on them). segs FILE FILTER -> the hex payload of each data segment matching the
# display filter, in capture order.
segs() { tshark -r "$1" -n -Y "($2) && tcp.len > 0" -T fields -e tcp.payload 2>/dev/null | tr -d ':'; }
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
# fact FILE TEXT CHECK [ARGS...]: CHECK must succeed, else the script fails.
fact() {
    local file=$1 text=$2; shift 2
    "$@" "$WORK/out/$file" || die "$file: the capture does not show that $text"
    printf '   fact: %s\n' "$text" >>"$VERIFY_LOG"
}
seg_count() { # N FILTER FILE: exactly N data segments match
    local n
    n=$(segs "$3" "$2" | grep -c . || true)
    [ "$n" = "$1" ]
}
first_seg_is() { # HEX FILTER FILE: the first matching data segment is exactly HEX
    local all
    all=$(segs "$3" "$2")
    [ "${all%%$'\n'*}" = "$1" ]
}
first_seg_starts() { # HEX FILTER FILE: the first matching data segment starts with HEX
    local all
    all=$(segs "$3" "$2")
    [ -n "$all" ] && [ "${all:0:${#1}}" = "$1" ]
}
nth_seg_starts() { # N HEX FILTER FILE: the Nth matching data segment starts with HEX
    local seg
    seg=$(segs "$4" "$3" | sed -n "$1p")
    [ -n "$seg" ] && [ "${seg:0:${#2}}" = "$2" ]
}
segs_contain() { # HEX FILTER FILE: the matching segments, joined, contain HEX
    local all
    all=$(segs "$3" "$2" | tr -d '\n')
    [[ $all == *"$1"* ]]
}
frames_count() { # N FILTER FILE: exactly N frames match (any length)
    local n
    n=$(tshark -r "$3" -n -o tcp.try_heuristic_first:TRUE -Y "$2" -T fields -e frame.number 2>/dev/null | grep -c . || true)
    [ "$n" = "$1" ]
}
streams_with_data() { # N FILTER FILE: exactly N TCP connections have data segments matching
    local n
    n=$(tshark -r "$3" -n -Y "($2) && tcp.len > 0" -T fields -e tcp.stream 2>/dev/null | sort -u | grep -c . || true)
    [ "$n" = "$1" ]
}
header_srcs_are() { # "SRC SRC..." FILTER FILE: the PROXY headers in matching frames name these sources, in order
    local got
    got=$(tshark -r "$3" -n -o tcp.try_heuristic_first:TRUE -Y "($2) && proxy" -T fields \
        -e proxy.src.ipv4 2>/dev/null | tr '\n' ' ')
    [ "${got% }" = "$1" ]
}
json_str() { local s=$1; s=${s//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
json_or_null() { if [ "$1" = null ]; then printf 'null'; else json_str "$1"; fi; }

json_list() { local out="" item; for item in $1; do out+="${out:+, }\"$item\""; done; printf '[%s]' "$out"; }

# What proxydiag must report on each capture (codes, the first one named first), and
# what it must not (codes, or the severities "error" and "warning": a correct setup
# yields neither). Files not listed here are correct setups.
declare -A MUST MUST_NOT
MUST[haproxy-healthchecks.pcap]="PD203";           MUST_NOT[haproxy-healthchecks.pcap]="error PD101 PD403"
MUST[header-to-plain-listener.pcap]="PD102";       MUST_NOT[header-to-plain-listener.pcap]="PD101 PD103"
MUST[no-header-to-proxy-listener.pcap]="PD101";    MUST_NOT[no-header-to-proxy-listener.pcap]="PD102 PD103"
MUST[v1-behind-tls.pcap]="PD302";                  MUST_NOT[v1-behind-tls.pcap]="error PD301"
MUST[tls-terminated-no-ssl-tlv.pcap]="PD301";      MUST_NOT[tls-terminated-no-ssl-tlv.pcap]="PD302"
MUST[header-to-plain-imap.pcap]="PD102";           MUST_NOT[header-to-plain-imap.pcap]="PD101"
MUST[two-proxies-both-send.pcap]="PD106 PD201";    MUST_NOT[two-proxies-both-send.pcap]="PD103"
MUST[healthcheck-no-header.pcap]="PD403";          MUST_NOT[healthcheck-no-header.pcap]="PD101"
MUST[l4-balancer-loses-client.pcap]="PD202";       MUST_NOT[l4-balancer-loses-client.pcap]="error"
MUST[tls-passthrough-to-plain.pcap]="PD303";       MUST_NOT[tls-passthrough-to-plain.pcap]="PD304"
MUST[correct-with-local-checks.pcap]="PD203";      MUST_NOT[correct-with-local-checks.pcap]="error warning"
MUST[nginx-expects-header-from-client.pcap]="PD109"; MUST_NOT[nginx-expects-header-from-client.pcap]="PD101"
MUST[malformed-v1.pcap]="PD103";                   MUST_NOT[malformed-v1.pcap]="PD101"
MUST[crc32c-mismatch.pcap]="PD103";                MUST_NOT[crc32c-mismatch.pcap]="PD101"
MUST[split-header.pcap]="PD105";                   MUST_NOT[split-header.pcap]="PD101"

# describe FILE FORMAT PROXY SERVER FRONT_PORTS(json) DESCRIPTION NOTES LEG...
#   LEG = "server_port header command ssl_tlv header_src family count"
#   count "auto:N" = whatever was observed, at least N (health checks).
#   The legs are the connections that LEGS names (see back_leg_summary): prefix the
#   call with LEGS="SRC>DST ..." for other legs than proxy -> server.
describe() {
    local file=$1 fmt=$2 proxy=$3 server=$4 fronts=$5 desc=$6 notes=$7; shift 7
    local path=$WORK/out/$file
    [ -s "$path" ] || die "capture $file missing"
    local summary
    summary=$(back_leg_summary "$path")
    printf '== %s\n%s\n' "$file" "$summary" >>"$VERIFY_LOG"
    local legs="" leg total_expected=0 total_seen
    total_seen=$(printf '%s\n' "$summary" | grep -c . || true)
    for leg in "$@"; do
        local sp h c ssl src fam cnt seen key
        read -r sp h c ssl src fam cnt <<<"$leg"
        key="$sp $h $c $ssl $src $fam"
        seen=$(printf '%s\n' "$summary" | grep -cxF "$key" || true)
        case $cnt in
            auto:*) [ "$seen" -ge "${cnt#auto:}" ] || die "$file: expected at least ${cnt#auto:} back legs '$key', tshark saw $seen"
                    cnt=$seen ;;
            *)      [ "$seen" = "$cnt" ] || { printf '%s\n' "$summary" >&2; die "$file: expected $cnt back legs '$key', tshark saw $seen"; } ;;
        esac
        total_expected=$((total_expected + cnt))
        legs+="${legs:+, }{\"server_port\": $sp, \"header\": \"$h\", \"command\": $(json_or_null "$c"), \"ssl_tlv\": $ssl, \"header_src\": $(json_or_null "$src"), \"family\": $(json_or_null "$fam"), \"count\": $cnt}"
    done
    [ "$total_seen" = "$total_expected" ] || { printf '%s\n' "$summary" >&2; die "$file: $total_seen back-leg connections seen, $total_expected described"; }
    [ -z "${LEGS:-}" ] || printf '   (legs: %s)\n' "$LEGS" >>"$VERIFY_LOG"
    local packets
    packets=$(capinfos -c -M "$path" 2>/dev/null | awk -F': *' '/Number of packets/ {gsub(/ /, "", $2); print $2}')
    MANIFEST_ENTRIES+=("  {\"file\": $(json_str "$file"), \"format\": \"$fmt\", \"packets\": ${packets:-null}, \"description\": $(json_str "$desc"), \"proxy\": $(json_str "$proxy"), \"server\": $(json_str "$server"), \"back_legs\": [$legs], \"front_port\": $fronts, \"notes\": $(json_str "$notes"), \"findings\": {\"must\": $(json_list "${MUST[$file]:-}"), \"must_not\": $(json_list "${MUST_NOT[$file]-error warning}")}}")
}

describe haproxy-v1-smtp.pcap pcap "haproxy 2.6 send-proxy" "postfix 3.7" "[20025]" \
    "Two complete SMTP sessions (EHLO, MAIL, RCPT, DATA, QUIT) from 127.0.0.10 through HAProxy send-proxy to a Postfix listener that expects the header." \
    "lo, Ethernet link type. Back leg 127.0.0.20 -> 127.0.0.30:10025 starts with a v1 line PROXY TCP4 127.0.0.10 127.0.0.20 <sport> 20025." \
    "10025 v1 PROXY false 127.0.0.10 TCP4 2"
describe haproxy-v2-smtp.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[21025]" \
    "Three SMTP sessions through HAProxy send-proxy-v2 to Postfix: plain, STARTTLS with AUTH PLAIN, and AUTH PLAIN in cleartext." \
    "Session 3 carries alice@example.test's AUTH PLAIN credentials in cleartext on both legs (smtpd_tls_auth_only = no); session 2 authenticates inside STARTTLS. No SSL TLV: the client's STARTTLS happens after the header." \
    "10025 v2 PROXY false 127.0.0.10 TCP4 3"
describe haproxy-v2ssl-smtps.pcap pcap "haproxy 2.6 ssl crt + send-proxy-v2-ssl" "postfix 3.7" "[20465]" \
    "Implicit-TLS SMTP session with AUTH PLAIN terminated by HAProxy, forwarded in plaintext to Postfix with a v2 header carrying the SSL TLV." \
    "Front leg is TLS (port 20465); back leg is plaintext, so the AUTH PLAIN credentials are readable on the back leg only. Postfix ignores the TLV and still offers STARTTLS." \
    "10025 v2 PROXY true 127.0.0.10 TCP4 1"
describe haproxy-v2-imap.pcap pcap "haproxy 2.6 send-proxy-v2 / send-proxy-v2-ssl" "dovecot 2.3" "[20143, 20993, 20110]" \
    "curl IMAP folder listing through HAProxy send-proxy-v2, IMAPS terminated by HAProxy with send-proxy-v2-ssl, and a POP3 listing, all to Dovecot listeners with haproxy = yes." \
    "curl logs in with IMAP AUTHENTICATE PLAIN (SASL-IR) and POP3 AUTH PLAIN: cleartext credentials on both legs for 20143 and 20110; the IMAPS session (20993) is TLS on the front leg and cleartext, credentials included, on the back leg. Dovecot still lists STARTTLS on that back leg." \
    "10143 v2 PROXY false 127.0.0.10 TCP4 1" \
    "10143 v2 PROXY true 127.0.0.10 TCP4 1" \
    "10110 v2 PROXY false 127.0.0.10 TCP4 1"
describe nginx-v1.pcap pcap "nginx 1.22 stream proxy_protocol on" "postfix 3.7 + dovecot 2.3" "[30025, 30143]" \
    "One SMTP session and one IMAP listing through the nginx stream module with proxy_protocol on (v1) and proxy_bind 127.0.0.20." \
    "nginx sends the v1 line as soon as it connects upstream. The IMAP login is cleartext." \
    "10025 v1 PROXY false 127.0.0.10 TCP4 1" \
    "10143 v1 PROXY false 127.0.0.10 TCP4 1"
describe haproxy-ipv6.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[21025]" \
    "SMTP session from ::1 to HAProxy on [::1]:21025, forwarded over IPv4 to Postfix with a v2 TCP6 header." \
    "Front leg is IPv6 (::1 -> ::1), back leg IPv4 (127.0.0.20 -> 127.0.0.30:10025); the header's addresses are ::1 -> ::1." \
    "10025 v2 PROXY false ::1 TCP6 1"
describe haproxy-healthchecks.pcap pcap "haproxy 2.6 send-proxy-v2 check inter 500" "postfix 3.7" "[]" \
    "About 3 s of HAProxy health checks to Postfix 10025 with no client traffic; each check sends a v2 LOCAL header." \
    "16-byte LOCAL headers (AF_UNSPEC, no addresses, no TLVs) every 500 ms from 127.0.0.20; HAProxy resets each check right after sending the header. Postfix 3.7 greets the first one, then its smtpd dies on most later ones (fatal: smtpd_peer_hostaddr_to_sockaddr ... Servname not supported for ai_socktype) and master throttles the service. The count depends on timing (about 6)." \
    "10025 v2 LOCAL false null UNSPEC auto:3"
describe any-sll2.pcap pcap "haproxy 2.6 send-proxy" "postfix 3.7" "[20025]" \
    "Scenario 1's two SMTP sessions recorded with tcpdump -i any (Linux cooked capture) and the filter host 127.0.0.20 or host 127.0.0.30." \
    "Link type LINUX_SLL2 (tcpdump 4.99 / libpcap 1.10 default for -i any)." \
    "10025 v1 PROXY false 127.0.0.10 TCP4 2"
describe multi-if.pcapng pcapng "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[21025]" \
    "One SMTP session through HAProxy send-proxy-v2 recorded by dumpcap on lo and any at once: a pcapng with two interfaces of different link types." \
    "Interface 0 is lo (EN10MB), interface 1 is any (LINUX_SLL, cooked v1 as dumpcap picks it), both with nanosecond resolution; every packet appears once per interface, so the single back-leg connection (count 1) is seen twice, the copy on interface 1 looking like retransmissions." \
    "10025 v2 PROXY false 127.0.0.10 TCP4 1"
describe nanosecond.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[21025]" \
    "One SMTP session through HAProxy send-proxy-v2 recorded with nanosecond timestamps." \
    "pcap with the nanosecond magic number a1b23c4d (tcpdump --time-stamp-precision=nano)." \
    "10025 v2 PROXY false 127.0.0.10 TCP4 1"
describe header-to-plain-listener.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[22025]" \
    "Mistake: HAProxy sends a v2 header to a Postfix listener (2525) that does not expect one; Postfix greets, then answers the header pieces with 500 and the QUIT in the signature ends the session." \
    "Postfix logs improper command pipelining after CONNECT with the header bytes; the 220 greeting, three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye reach the client, whose EHLO fails. Port 2525 has smtpd_upstream_proxy_protocol unset." \
    "2525 v2 PROXY false 127.0.0.10 TCP4 1"
describe no-header-to-proxy-listener.pcap pcap "haproxy 2.6 (no send-proxy)" "postfix 3.7" "[23025]" \
    "Mistake: HAProxy without send-proxy in front of a Postfix listener that expects a header; Postfix never greets and swaks times out after 3 s." \
    "No PROXY header: the back leg stays silent for 3 s, then swaks gives up and sends QUIT, which HAProxy forwards; Postfix reads it as a header (log: short protocol header), answers 421 4.3.0 Server local error and resets the connection." \
    "10025 none null false null null 1"
describe v1-behind-tls.pcap pcap "haproxy 2.6 ssl crt + send-proxy" "postfix 3.7" "[20466]" \
    "Mistake: HAProxy terminates implicit TLS but sends a v1 header, which cannot say that the client used TLS." \
    "The session itself succeeds; the back leg is plaintext after a v1 line, so the server believes the client spoke plaintext." \
    "10025 v1 PROXY false 127.0.0.10 TCP4 1"

SIG_HEX=0d0a0d0a000d0a515549540a   # the v2 signature
TO_PF="ip.dst == $SERVER && tcp.dstport == 10025"
FROM_PF="ip.src == $SERVER && tcp.srcport == 10025"
describe tls-terminated-no-ssl-tlv.pcap pcap "haproxy 2.6 ssl crt + send-proxy-v2" "postfix 3.7" "[20467]" \
    "Mistake: HAProxy terminates implicit TLS (20467) but sends send-proxy-v2 without -ssl: the v2 header has no SSL TLV, so the server cannot know that the client used TLS." \
    "Front leg 127.0.0.10 -> 127.0.0.20:20467 opens with a TLS ClientHello; the back leg to 10025 is plaintext after a 28-byte v2 header without TLVs. The session succeeds, and Postfix offers STARTTLS on the back leg to a client that is already encrypted." \
    "10025 v2 PROXY false 127.0.0.10 TCP4 1"
fact tls-terminated-no-ssl-tlv.pcap "the front leg opens with a TLS handshake record" \
    first_seg_starts 16 "ip.src == $CLIENT && tcp.dstport == 20467"
fact tls-terminated-no-ssl-tlv.pcap "the back-leg header declares 12 bytes (addresses only, no TLV)" \
    first_seg_starts "${SIG_HEX}2111000c" "ip.src == $PROXY && $TO_PF"
fact tls-terminated-no-ssl-tlv.pcap "Postfix offers STARTTLS on the back leg" \
    segs_contain "$(hex 250-STARTTLS)" "$FROM_PF"

describe header-to-plain-imap.pcap pcap "haproxy 2.6 send-proxy-v2" "dovecot 2.3" "[22143]" \
    "Mistake: HAProxy sends a v2 header to Dovecot's plain IMAP listener (1143, without haproxy = yes); Dovecot greets and answers the header bytes as IMAP commands." \
    "Dovecot greets (* OK, with its capabilities, or * OK Waiting for authentication process to respond. when its auth process is still busy), then answers * BAD Error in IMAP command received by server. and ends with * BYE Too many invalid IMAP commands.; curl's login fails (exit 56). Dovecot logs the proxy's address (rip=127.0.0.20) as the client." \
    "1143 v2 PROXY false 127.0.0.10 TCP4 1"
fact header-to-plain-imap.pcap "Dovecot greets first" \
    first_seg_starts "$(hex '* OK ')" "ip.src == $SERVER && tcp.srcport == 1143"
fact header-to-plain-imap.pcap "Dovecot answers * BAD Error in IMAP command received by server." \
    segs_contain "$(hex $'* BAD Error in IMAP command received by server.\r\n')" "ip.src == $SERVER && tcp.srcport == 1143"
fact header-to-plain-imap.pcap "Dovecot ends with * BYE Too many invalid IMAP commands." \
    segs_contain "$(hex '* BYE Too many invalid IMAP commands.')" "ip.src == $SERVER && tcp.srcport == 1143"

LEGS="$PROXY>$PROXY2 $PROXY2>$SERVER" \
describe two-proxies-both-send.pcap pcap "haproxy 2.6 send-proxy-v2, two proxies in a chain" "postfix 3.7" "[25025]" \
    "Mistake: two HAProxy proxies in a chain both send a v2 header: A (127.0.0.20:25025) sends one to B (127.0.0.21:25026, whose bind has no accept-proxy), and B puts its own header in front of A's." \
    "All three legs: client 127.0.0.10 -> A 127.0.0.20:25025; A -> B 127.0.0.20 -> 127.0.0.21:25026 with A's header (client 127.0.0.10); B -> Postfix 127.0.0.21 -> 127.0.0.30:10025 with B's header, which names A's address 127.0.0.20 as the client, followed by A's 28-byte header as data. Postfix accepts B's header, greets with 220, answers A's header with three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye (the QUIT in the signature) and closes; swaks fails. back_legs lists A's leg to B (server_port 25026) and B's leg to Postfix." \
    "25026 v2 PROXY false 127.0.0.10 TCP4 1" \
    "10025 v2 PROXY false 127.0.0.20 TCP4 1"
fact two-proxies-both-send.pcap "B's leg to Postfix carries two v2 headers: B's (client 127.0.0.20), then A's (client 127.0.0.10)" \
    header_srcs_are "$PROXY $CLIENT" "ip.src == $PROXY2 && $TO_PF"
fact two-proxies-both-send.pcap "Postfix greets B's leg" first_seg_starts "$(hex '220 mail.example.test')" "$FROM_PF"
fact two-proxies-both-send.pcap "Postfix answers three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye" \
    segs_contain "$(hex $'500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n221 2.0.0 Bye\r\n')" "$FROM_PF"

describe healthcheck-no-header.pcap pcap "haproxy 2.6 send-proxy-v2 check port 10025 inter 300" "postfix 3.7" "[24026]" \
    "Mistake: HAProxy health checks with a port of their own (check port 10025) send no PROXY header to a Postfix listener that expects one; one real SMTP session through the same backend carries a v2 header." \
    "About 2 s of a separate HAProxy instance: every 300 ms a connect-only check from 127.0.0.20 (SYN, SYN-ACK, then RST from HAProxy; no byte either way), about 7 in all (the count depends on timing), plus one swaks session through 127.0.0.20:24026 with a v2 header naming 127.0.0.10." \
    "10025 none null false null null auto:3" \
    "10025 v2 PROXY false 127.0.0.10 TCP4 1"
fact healthcheck-no-header.pcap "only the real session carries data to or from Postfix" \
    streams_with_data 1 "tcp.port == 10025"

describe l4-balancer-loses-client.pcap pcap "nginx 1.22 stream without proxy_protocol (L4 relay) + haproxy 2.6 send-proxy-v2" "postfix 3.7" "[40025]" \
    "Mistake: a plain L4 relay (nginx stream without proxy_protocol, 127.0.0.15:40025) in front of HAProxy: six SMTP sessions from 127.0.0.10, and every header names the relay 127.0.0.15 as the client." \
    "Three legs per session: 127.0.0.10 -> 127.0.0.15:40025 (nginx, proxy_bind 127.0.0.15), 127.0.0.15 -> 127.0.0.20:25027 (no header), 127.0.0.20 -> 127.0.0.30:10025 (v2 header, client 127.0.0.15). All six sessions succeed; Postfix logs every client as 127.0.0.15." \
    "10025 v2 PROXY false 127.0.0.15 TCP4 6"
fact l4-balancer-loses-client.pcap "six relay legs 127.0.0.15 -> 127.0.0.20:25027" \
    frames_count 6 "tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.src == $L4BAL && ip.dst == $PROXY && tcp.dstport == 25027"
fact l4-balancer-loses-client.pcap "the relay legs carry no PROXY header" \
    frames_count 0 "ip.src == $L4BAL && proxy"

describe tls-passthrough-to-plain.pcap pcap "haproxy 2.6 send-proxy-v2 (no ssl on the bind: TLS passed through)" "postfix 3.7" "[20468]" \
    "Mistake: HAProxy passes implicit TLS through (mode tcp, no ssl on the bind) to Postfix's plaintext listener: after the header the client's ClientHello reaches a server that speaks plaintext." \
    "swaks --tls-on-connect to 127.0.0.20:20468. Postfix accepts the header and greets in plaintext (220); the client's ClientHello follows the header on the back leg, and Postfix answers its bytes as commands (500 5.5.2 Error: bad UTF-8 syntax / bad syntax; their number depends on the random bytes). swaks fails with wrong version number and resets." \
    "10025 v2 PROXY false 127.0.0.10 TCP4 1"
fact tls-passthrough-to-plain.pcap "Postfix greets the back leg in plaintext" \
    first_seg_starts "$(hex '220 mail.example.test')" "$FROM_PF"
fact tls-passthrough-to-plain.pcap "the back leg carries the header, then a TLS handshake record" \
    nth_seg_starts 2 16 "ip.src == $PROXY && $TO_PF"

describe correct-with-local-checks.pcap pcap "haproxy 2.6 send-proxy-v2 check inter 500" "dovecot 2.3" "[24143]" \
    "Correct setup: HAProxy health checks send v2 LOCAL headers to Dovecot (haproxy = yes), which accepts them, and two curl IMAP sessions pass through the same backend." \
    "About 2 s of a separate HAProxy instance: LOCAL checks from 127.0.0.20 every 500 ms (about 4; the count depends on timing; HAProxy resets each one after Dovecot's greeting) and two IMAP logins with folder listings (v2 PROXY, client 127.0.0.10; AUTHENTICATE PLAIN in cleartext)." \
    "10143 v2 LOCAL false null UNSPEC auto:2" \
    "10143 v2 PROXY false 127.0.0.10 TCP4 2"

describe nginx-expects-header-from-client.pcap pcap "nginx 1.22 stream: proxy_protocol on; and listen ... proxy_protocol" "postfix 3.7" "[30025, 30026]" \
    "Mistake: an nginx stream server with listen ... proxy_protocol expects a header from its clients; next to it a correct server (proxy_protocol on only) forwards one session." \
    "30025 (correct): one swaks session, back leg with a v1 header. 30026 (listen ... proxy_protocol): swaks waits for a greeting, nginx waits for a header; after 2 s swaks sends QUIT, nginx logs broken header: \"QUIT\" while reading PROXY protocol and resets the connection without ever connecting to Postfix, so that session has no back leg." \
    "10025 v1 PROXY false 127.0.0.10 TCP4 1"
fact nginx-expects-header-from-client.pcap "the client's only bytes to 30026 are QUIT" \
    first_seg_is "$(hex $'QUIT\r\n')" "ip.src == $CLIENT && tcp.dstport == 30026"
fact nginx-expects-header-from-client.pcap "nginx sends no byte on 30026" \
    seg_count 0 "ip.src == $PROXY && tcp.srcport == 30026"
fact nginx-expects-header-from-client.pcap "nginx resets the 30026 connection" \
    frames_count 1 "ip.src == $PROXY && tcp.srcport == 30026 && tcp.flags.reset == 1"

CRAFT_PROXY="none: crafted bytes from a python3 socket client (127.0.0.10) straight to the server"
LEGS="$CLIENT>$SERVER" \
describe malformed-v1.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted malformed v1 header (leading zero in the destination port) sent straight to a Postfix listener that expects a header." \
    "The client (127.0.0.10) sends PROXY TCP4 203.0.113.7 127.0.0.30 40000 070 CRLF to 127.0.0.30:10025. Postfix logs haproxy read: bad or missing server port, answers 421 4.3.0 mail.example.test Server local error and resets. Wireshark still decodes the line as a v1 header. The back leg here is the client's own connection; 203.0.113.7 appears only inside the header." \
    "10025 v1 PROXY false 203.0.113.7 TCP4 1"
fact malformed-v1.pcap "the client's first segment is exactly the crafted line" \
    first_seg_is "$(hex $'PROXY TCP4 203.0.113.7 127.0.0.30 40000 070\r\n')" "ip.src == $CLIENT && $TO_PF"
fact malformed-v1.pcap "Postfix answers 421 4.3.0" first_seg_starts "$(hex '421 4.3.0')" "$FROM_PF"
fact malformed-v1.pcap "Postfix resets the connection" frames_count 1 "$FROM_PF && tcp.flags.reset == 1"

LEGS="$CLIENT>$SERVER" \
describe crc32c-mismatch.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted v2 header with a CRC32C TLV whose checksum is wrong (0xDEADBEEF), sent straight to a Postfix listener that expects a header; Postfix does not check the CRC and the session goes on." \
    "35-byte header: PROXY TCP4 203.0.113.7:40000 -> 127.0.0.30:10025, one TLV type 0x03 (CRC32C) length 4 value DEADBEEF; the correct CRC32C of this header is 0xA8B7BC7A. Postfix greets (220), answers EHLO and QUIT (221). The back leg here is the client's own connection." \
    "10025 v2 PROXY false 203.0.113.7 TCP4 1"
fact crc32c-mismatch.pcap "the client's first segment is exactly the crafted header" \
    first_seg_is "${SIG_HEX}21110013cb0071077f00001e9c402729030004deadbeef" "ip.src == $CLIENT && $TO_PF"
fact crc32c-mismatch.pcap "Postfix greets and ends with 221" segs_contain "$(hex $'221 2.0.0 Bye\r\n')" "$FROM_PF"

LEGS="$CLIENT>$SERVER" \
describe split-header.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted valid v2 header sent in two send() calls 200 ms apart (TCP_NODELAY) straight to a Postfix listener that expects a header: Postfix reads the first segment alone, refuses it and resets, so the second part never leaves the client." \
    "Intended: 16 bytes (signature, 0x21, 0x11, length 12), then 200 ms later the 12-byte address block (203.0.113.7:40000 -> 127.0.0.30:10025). On the wire: the 16-byte segment only. Postfix peeks once, logs haproxy read: short version 2 protocol header, answers 421 4.3.0 mail.example.test Server local error and resets within a millisecond; the client's second send fails with ECONNRESET. header_src is null: the address block is not in the capture. HAProxy 2.6 accept-proxy (Truncated PROXY protocol header received) and nginx 1.22 listen proxy_protocol (header is too large) refuse a header split this way too." \
    "10025 v2 PROXY false null TCP4 1"
fact split-header.pcap "the client sent one 16-byte segment, the header's first 16 bytes" \
    first_seg_is "${SIG_HEX}2111000c" "ip.src == $CLIENT && $TO_PF"
fact split-header.pcap "the second part of the header never left the client" seg_count 1 "ip.src == $CLIENT && $TO_PF"
fact split-header.pcap "Postfix answers 421 4.3.0" first_seg_starts "$(hex '421 4.3.0')" "$FROM_PF"
fact split-header.pcap "Postfix resets the connection" frames_count 1 "$FROM_PF && tcp.flags.reset == 1"

{
    printf '[\n'
    n=${#MANIFEST_ENTRIES[@]}
    for i in "${!MANIFEST_ENTRIES[@]}"; do
        printf '%s' "${MANIFEST_ENTRIES[$i]}"
        [ "$i" -lt $((n - 1)) ] && printf ','
        printf '\n'
    done
    printf ']\n'
} >"$WORK/out/manifest.json"

# --------------------------------------------------------------------------
# Step K. Publish (only our own file names; everything verified first).
# --------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
for f in "$WORK"/out/*; do
    cp -f "$f" "$OUT_DIR/$(basename "$f").tmp.$$"
    chmod 644 "$OUT_DIR/$(basename "$f").tmp.$$"   # dumpcap creates 0600 files
    mv -f "$OUT_DIR/$(basename "$f").tmp.$$" "$OUT_DIR/$(basename "$f")"
done
log "wrote $(ls "$WORK/out" | wc -l) files to $OUT_DIR"
cat "$VERIFY_LOG" >&2
log "done in $(($(date +%s) - START_TS)) s"
