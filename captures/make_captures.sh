#!/usr/bin/env bash
# make_captures.sh - record real PROXY-protocol traffic for proxydiag's tests.
#
# A lab shaped like production, on loopback: the proxies own the public ports
# (25/465/587/143/993/110/4190) and the mail servers listen on Stalwart's 10000+
# layout (10025/10465/10587/10143/10993/10110/14190), both with TLS. Postfix 3.7 and
# Dovecot 2.3 run for the whole run; each scenario starts its own proxy (HAProxy 2.6,
# nginx 1.22 stream or mail, stunnel 5.68, socat) from a throw-away config, drives
# real clients (swaks, curl, socat) through it, records it with tcpdump / dumpcap,
# stops it, and the script writes the captures plus manifest.json.
#
# Usage (as root, Debian 12):  captures/make_captures.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to the directory of this script.
#   KEEP_WORK=1 keeps the temp dir (configs, daemon logs, client logs).
#
# Address plan (all in 127.80.0.0/16, so that nothing collides with other loopback
# users of the machine): clients 127.80.0.10 -> proxies 127.80.0.20 (127.80.0.21 the
# second proxy of a chain, 127.80.0.15 an L4 relay) -> servers 127.80.0.30, whose
# listeners expect a PROXY header, and 127.80.0.31, the same services without one.
# Local tests run the client on the proxy host: from 127.80.0.20 itself, and from
# ::1 to an HAProxy on [::1]:42525 (a port no one else uses; the header still names
# port 25). Nothing ever talks to a non-loopback address.
set -euo pipefail

START_TS=$(date +%s)
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${1:-$SCRIPT_DIR}

LAB_NET=127.80.0.0/16
CLIENT=127.80.0.10
L4BAL=127.80.0.15     # L4 relay (no PROXY support) in front of a proxy
PROXY=127.80.0.20
PROXY2=127.80.0.21    # second proxy of a chain
AUTH_HTTP=127.80.0.20 # nginx mail's auth_http responder runs on the proxy host
AUTH_HTTP_PORT=9180
SERVER=127.80.0.30       # listeners that expect a PROXY header
SERVER_PLAIN=127.80.0.31 # the same services, no header expected
V6_LOCAL_PORT=42525      # HAProxy's SMTP port on ::1 (port 25 on ::1 is the machine's)
USER_NAME='alice@example.test'
USER_PASS='Tr0ub4dor&3xample'

log() { printf '[make_captures %3ss] %s\n' "$(($(date +%s) - START_TS))" "$*" >&2; }
die() {
    printf '\nmake_captures: ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (tcpdump, daemons on privileged ports, apt-get)"

# --------------------------------------------------------------------------
# Step A. Install what is missing (apt-get update once, then one install).
# --------------------------------------------------------------------------
PKGS=(haproxy nginx libnginx-mod-stream libnginx-mod-mail stunnel4 postfix
      dovecot-imapd dovecot-pop3d dovecot-managesieved tcpdump tshark swaks curl
      openssl socat python3)
need_install=0
for c in haproxy nginx stunnel4 postfix postconf dovecot doveadm tcpdump tshark dumpcap \
         capinfos swaks curl openssl socat python3 timeout; do
    command -v "$c" >/dev/null 2>&1 || { need_install=1; log "missing command: $c"; }
done
for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib/nginx/modules/ngx_mail_module.so \
         /usr/lib/dovecot/imap /usr/lib/dovecot/pop3 /usr/lib/dovecot/imap-login \
         /usr/lib/dovecot/pop3-login /usr/lib/dovecot/managesieve-login; do
    [ -e "$f" ] || { need_install=1; log "missing file: $f"; }
done
if [ "$need_install" = 1 ]; then
    log "installing: ${PKGS[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null || die "apt-get update failed"
    apt-get -o DPkg::Lock::Timeout=900 install -y "${PKGS[@]}" </dev/null || die "apt-get install failed"
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
for svc in postfix dovecot nginx haproxy stunnel4; do stop_system_service "$svc"; done
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
        sleep 0.05
    done
    [ -n "${4:-}" ] && [ -f "$4" ] && tail -n 20 "$4" >&2
    die "$1 is not listening on $2:$3 after 5 s"
}
wait_not_listening() { # ADDR PORT
    local i
    for i in $(seq 1 100); do
        is_listening "$1" "$2" || return 0
        sleep 0.05
    done
    die "$1:$2 is still in use 5 s after its proxy stopped"
}

SERVER_PORTS=(10025 10465 10587 10143 10993 10110 14190)
PLAIN_PORTS=(10025 10143 10110)
PUBLIC_PORTS=(25 465 587 143 993 110 4190)
for p in "${SERVER_PORTS[@]}"; do
    is_listening "$SERVER" "$p" && die "port $SERVER:$p is already in use (a previous run still alive?)"
done
for p in "${PLAIN_PORTS[@]}"; do
    is_listening "$SERVER_PLAIN" "$p" && die "port $SERVER_PLAIN:$p is already in use"
done
for p in "${PUBLIC_PORTS[@]}"; do
    for a in "$PROXY" "$PROXY2" "$L4BAL"; do
        is_listening "$a" "$p" && die "port $a:$p is already in use (a previous run still alive?)"
    done
done
is_listening ::1 "$V6_LOCAL_PORT" && die "port [::1]:$V6_LOCAL_PORT is already in use"
is_listening "$AUTH_HTTP" "$AUTH_HTTP_PORT" && die "port $AUTH_HTTP:$AUTH_HTTP_PORT is already in use"

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
# Step D. Certificates: a throw-away CA, the servers' certificate (CN
#    mail.example.test) and two client certificates: alice's, signed by the CA, and
#    a self-signed one that no CA vouches for.
# --------------------------------------------------------------------------
log "generating certificates"
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
{
    new_key "$WORK/ca-key.pem"
    openssl req -x509 -new -key "$WORK/ca-key.pem" -days 7 -subj "/CN=proxydiag lab CA" -out "$WORK/ca.pem"
    new_key "$WORK/key.pem"
    openssl req -new -key "$WORK/key.pem" -subj "/CN=mail.example.test" -out "$WORK/server.csr"
    printf 'subjectAltName=DNS:mail.example.test\n' >"$WORK/server.ext"
    openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
        -CAcreateserial -days 7 -extfile "$WORK/server.ext" -out "$WORK/cert.pem"
    new_key "$WORK/client-key.pem"
    openssl req -new -key "$WORK/client-key.pem" -subj "/CN=alice.example.test" -out "$WORK/client.csr"
    openssl x509 -req -in "$WORK/client.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
        -CAcreateserial -days 7 -out "$WORK/client-cert.pem"
    new_key "$WORK/rogue-key.pem"
    openssl req -x509 -new -key "$WORK/rogue-key.pem" -days 7 -subj "/CN=mallory.example.test" -out "$WORK/rogue-cert.pem"
} >"$WORK/logs/openssl.log" 2>&1 || { cat "$WORK/logs/openssl.log" >&2; die "openssl could not create the certificates"; }
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
chmod 644 "$WORK"/*key.pem   # throw-away keys; Dovecot/Postfix read them after dropping privileges

# --------------------------------------------------------------------------
# Step E. Dovecot 2.3 with TLS: on $SERVER IMAP 10143, IMAPS 10993, POP3 10110 and
#    ManageSieve 14190, all with haproxy = yes; on $SERVER_PLAIN IMAP 10143 and POP3
#    10110 without it. Also the SASL socket Postfix authenticates against.
# --------------------------------------------------------------------------
DV=$WORK/dovecot
mkdir -p "$DV/base" "$DV/state" "$DV/mail"
chown nobody:nogroup "$DV/mail"
printf '%s:{PLAIN}%s:65534:65534::%s/mail/alice::\n' "$USER_NAME" "$USER_PASS" "$DV" >"$DV/passwd"
chmod 644 "$DV/passwd"
dovecot_listener() { # NAME ADDRESS PORT HAPROXY(yes|no) SSL(yes|no)
    printf '  inet_listener %s {\n    address = %s\n    port = %s\n    haproxy = %s\n    ssl = %s\n  }\n' "$@"
}
cat >"$DV/dovecot.conf" <<EOF
# throw-away Dovecot config for proxydiag captures
protocols = imap pop3 sieve
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
# nginx's mail module cannot choose its source address: its legs come from 127.0.0.1.
haproxy_trusted_networks = $PROXY $PROXY2 127.0.0.1
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
$(dovecot_listener imap_haproxy "$SERVER" 10143 yes no)
$(dovecot_listener imaps_haproxy "$SERVER" 10993 yes yes)
$(dovecot_listener imap_plain "$SERVER_PLAIN" 10143 no no)
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
$(dovecot_listener pop3_haproxy "$SERVER" 10110 yes no)
$(dovecot_listener pop3_plain "$SERVER_PLAIN" 10110 no no)
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
service managesieve-login {
$(dovecot_listener sieve_haproxy "$SERVER" 14190 yes no)
  inet_listener sieve {
    port = 0
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
for p in 10143 10993 10110 14190; do wait_listening dovecot "$SERVER" "$p" "$WORK/logs/dovecot.log"; done
for p in 10143 10110; do wait_listening dovecot "$SERVER_PLAIN" "$p" "$WORK/logs/dovecot.log"; done

# --------------------------------------------------------------------------
# Step F. Postfix 3.7 with TLS (STARTTLS offered): on $SERVER 10025 (MX), 10587
#    (submission) and 10465 (submissions, implicit TLS), all expecting a PROXY header;
#    on $SERVER_PLAIN 10025 without. Mail for example.test is accepted and discarded.
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
$SERVER:10587 inet  n     -      n      -      -       smtpd -o smtpd_upstream_proxy_protocol=haproxy
$SERVER:10465 inet  n     -      n      -      -       smtpd -o smtpd_upstream_proxy_protocol=haproxy -o smtpd_tls_wrappermode=yes
$SERVER_PLAIN:10025 inet n   -      n      -      -       smtpd
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
for p in 10025 10587 10465; do wait_listening postfix "$SERVER" "$p" "$WORK/logs/postfix.log"; done
wait_listening postfix "$SERVER_PLAIN" 10025 "$WORK/logs/postfix.log"

# --------------------------------------------------------------------------
# Step G. The proxies: one throw-away config per scenario, each checked by the
#    program that reads it (haproxy -c, nginx -t) before any capture starts. A
#    scenario starts its proxies, records, and stops them, so every scenario owns
#    the public ports while it runs.
# --------------------------------------------------------------------------
HA=$WORK/haproxy
NG=$WORK/nginx
ST=$WORK/stunnel
mkdir -p "$HA" "$NG" "$ST"

# ha_cfg NAME BODY: an HAProxy 2.6 config (mode tcp) with these listen sections.
ha_cfg() {
    cat >"$HA/$1.cfg" <<EOF
# throw-away HAProxy config for proxydiag captures: $1
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
    timeout check 2s
    source $PROXY

$2
EOF
    haproxy -c -f "$HA/$1.cfg" >>"$WORK/logs/haproxy-check.log" 2>&1 \
        || { tail -n 20 "$WORK/logs/haproxy-check.log" >&2; die "HAProxy rejected $HA/$1.cfg"; }
}
# ng_cfg NAME MODULE BLOCK: an nginx 1.22 config with one stream or mail block.
ng_cfg() {
    mkdir -p "$NG/$1"
    cat >"$NG/$1/nginx.conf" <<EOF
# throw-away nginx config for proxydiag captures: $1
load_module /usr/lib/nginx/modules/ngx_$2_module.so;
worker_processes 1;
pid $NG/$1/nginx.pid;
error_log $WORK/logs/nginx-$1.log info;
events { worker_connections 64; }
$3
EOF
    nginx -t -p "$NG/$1/" -e "$WORK/logs/nginx-$1.log" -c "$NG/$1/nginx.conf" >>"$WORK/logs/nginx-check.log" 2>&1 \
        || { tail -n 20 "$WORK/logs/nginx-check.log" >&2; die "nginx rejected $NG/$1/nginx.conf"; }
}
# Listen sections: listen NAME BIND SERVER_LINE
ha_listen() { printf 'listen %s\n    bind %s\n    server %s\n\n' "$@"; }
TLS_BIND="ssl crt $WORK/haproxy.pem"
V2=send-proxy-v2
ha_cfg smtp_v1          "$(ha_listen mx "$PROXY:25" "postfix $SERVER:10025 send-proxy")"
ha_cfg mx_v2            "$(ha_listen mx "$PROXY:25" "postfix $SERVER:10025 $V2")"
ha_cfg submission_v2    "$(ha_listen submission "$PROXY:587" "postfix $SERVER:10587 $V2")"
ha_cfg smtps_v2ssl      "$(ha_listen submissions "$PROXY:465 $TLS_BIND" "postfix $SERVER:10587 send-proxy-v2-ssl")"
ha_cfg dovecot_v2       "$(ha_listen imap "$PROXY:143" "dovecot $SERVER:10143 $V2")
$(ha_listen imaps "$PROXY:993 $TLS_BIND" "dovecot $SERVER:10143 send-proxy-v2-ssl")
$(ha_listen pop3 "$PROXY:110" "dovecot $SERVER:10110 $V2")"
ha_cfg sieve_v2         "$(ha_listen sieve "$PROXY:4190" "dovecot $SERVER:14190 $V2")"
# Stalwart's own guide: TLS passed through to the implicit-TLS listeners.
ha_cfg tls_passthrough  "$(ha_listen imaps "$PROXY:993" "dovecot $SERVER:10993 $V2")
$(ha_listen submissions "$PROXY:465" "postfix $SERVER:10465 $V2")"
ha_cfg local_test       "$(ha_listen mx "$PROXY:25" "postfix $SERVER:10025 $V2")
listen mx_ipv6
    bind [::1]:$V6_LOCAL_PORT
    # the header names port 25, as a listener on [::1]:25 would
    tcp-request connection set-dst-port int(25)
    server postfix $SERVER:10025 $V2
"
# The proxy runs behind Docker's userland proxy: every client arrives from the bridge
# gateway 172.17.0.1 (set-src stands in for the bridge, which loopback cannot be).
ha_cfg docker_bridge    "listen submission
    bind $PROXY:587
    tcp-request connection set-src ipv4(172.17.0.1)
    server postfix $SERVER:10587 $V2
"
ha_cfg header_to_plain  "$(ha_listen mx "$PROXY:25" "postfix $SERVER_PLAIN:10025 $V2")"
ha_cfg no_header        "$(ha_listen mx "$PROXY:25" "postfix $SERVER:10025")"
ha_cfg v1_behind_tls    "$(ha_listen submissions "$PROXY:465 $TLS_BIND" "postfix $SERVER:10587 send-proxy")"
ha_cfg tls_no_ssl_tlv   "$(ha_listen submissions "$PROXY:465 $TLS_BIND" "postfix $SERVER:10587 $V2")"
ha_cfg header_to_plain_imap "$(ha_listen imap "$PROXY:143" "dovecot $SERVER_PLAIN:10143 $V2")"
ha_cfg pop3_to_plain    "$(ha_listen pop3 "$PROXY:110" "dovecot $SERVER_PLAIN:10110 $V2")"
ha_cfg pop3_no_header   "$(ha_listen pop3 "$PROXY:110" "dovecot $SERVER:10110")"
# Two proxies in a chain that both send a header: A ($PROXY) -> B ($PROXY2, whose
# bind has no accept-proxy) -> Postfix.
ha_cfg two_proxies      "$(ha_listen proxy_a "$PROXY:25" "proxy_b $PROXY2:25 $V2")
listen proxy_b
    bind $PROXY2:25
    source $PROXY2
    server postfix $SERVER:10025 $V2
"
ha_cfg tls_passthrough_plain "$(ha_listen submissions "$PROXY:465" "postfix $SERVER:10587 $V2")"
# HAProxy terminates TLS, then sends plaintext into the implicit-TLS listeners.
ha_cfg tls_to_implicit  "$(ha_listen imaps "$PROXY:993 $TLS_BIND" "dovecot $SERVER:10993 send-proxy-v2-ssl")
$(ha_listen submissions "$PROXY:465 $TLS_BIND" "postfix $SERVER:10465 send-proxy-v2-ssl")"
# Told to expect a header from its clients (accept-proxy) instead of only sending one.
ha_cfg accept_proxy     "$(ha_listen mx "$PROXY:25 accept-proxy" "postfix $SERVER:10025 $V2")
$(ha_listen imaps "$PROXY:993 accept-proxy $TLS_BIND" "dovecot $SERVER:10143 send-proxy-v2-ssl")"
ha_cfg ssl_cn           "$(ha_listen imaps "$PROXY:993 $TLS_BIND ca-file $WORK/ca.pem verify optional crt-ignore-err all" \
                           "dovecot $SERVER:10143 send-proxy-v2-ssl-cn")"
# Health checks: connect-only checks with a port of their own in front of Postfix (no
# header at all), and LOCAL-header checks to Dovecot only (Postfix 3.7's smtpd dies on
# LOCAL headers and its master then throttles the service).
ha_cfg checks_port      "$(ha_listen submission "$PROXY:587" "postfix $SERVER:10587 $V2 check port 10587 inter 300")"
ha_cfg checks_imap      "$(ha_listen imap "$PROXY:143" "dovecot $SERVER:10143 $V2 check inter 500")"

NG_LOG_FORMAT="log_format basic '\$remote_addr:\$remote_port -> \$upstream_addr \$status \$bytes_sent/\$bytes_received \$session_time';"
ng_stream() { # NAME SERVER_BLOCKS
    ng_cfg "$1" stream "stream {
    $NG_LOG_FORMAT
    access_log $WORK/logs/nginx-$1-access.log basic;
    proxy_connect_timeout 3s;
    proxy_timeout 30s;
$2
}"
}
ng_server() { # LISTEN PROXY_PASS EXTRA_DIRECTIVES
    printf '    server {\n        listen %s;\n        proxy_pass %s;\n        %s\n    }\n' "$@"
}
FROM_PROXY="proxy_bind $PROXY;"
ng_stream nginx_v1 "$(ng_server "$PROXY:25" "$SERVER:10025" "$FROM_PROXY proxy_protocol on;")
$(ng_server "$PROXY:143" "$SERVER:10143" "$FROM_PROXY proxy_protocol on;")"
# "listen ... proxy_protocol" makes nginx expect a header from the client; next to it a
# correct server (proxy_protocol on only).
ng_stream nginx_expects "$(ng_server "$PROXY:587" "$SERVER:10587" "$FROM_PROXY proxy_protocol on;")
$(ng_server "$PROXY:25 proxy_protocol" "$SERVER:10025" "$FROM_PROXY proxy_protocol on;")"
ng_stream nginx_listen_pp "$(ng_server "$PROXY:25 proxy_protocol" "$SERVER:10025" "$FROM_PROXY proxy_protocol on;")
$(ng_server "$PROXY:993 proxy_protocol" "$SERVER:10993" "$FROM_PROXY proxy_protocol on;")"
# a plain L4 relay (no PROXY protocol) in front of HAProxy
ng_stream l4_relay "$(ng_server "$L4BAL:25" "$PROXY:25" "proxy_bind $L4BAL;")"
# nginx's mail proxy: it authenticates the client through auth_http, then connects to
# the server that auth_http names, sends a v1 header and logs in there itself.
ng_cfg nginx_mail mail "mail {
    server_name mail.example.test;
    auth_http $AUTH_HTTP:$AUTH_HTTP_PORT/auth;
    proxy_pass_error_message on;
    imap_auth plain login;
    server {
        listen $PROXY:143;
        protocol imap;
        proxy_protocol on;
    }
}"

# stunnel terminates implicit TLS and sends a v1 header (protocol = proxy).
cat >"$ST/stunnel.conf" <<EOF
; throw-away stunnel config for proxydiag captures
foreground = yes
pid =
debug = 5
[submissions]
accept = $PROXY:465
connect = $SERVER:10587
local = $PROXY
cert = $WORK/cert.pem
key = $WORK/key.pem
protocol = proxy
EOF

# The auth_http responder for nginx's mail proxy: every login goes to Dovecot 10143.
AUTH_PY=$WORK/auth_http.py
cat >"$AUTH_PY" <<'PY'
import http.server, sys

host, port, server, server_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

class Auth(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", server)
        self.send_header("Auth-Port", server_port)
        self.end_headers()

    def log_message(self, fmt, *args):  # no credentials in the log: method and path only
        sys.stderr.write("auth_http %s %s\n" % (self.command, self.path))

http.server.HTTPServer((host, port), Auth).serve_forever()
PY

# Starting and stopping a scenario's proxies. up KIND NAME ADDR:PORT...
SC_PIDS=()
SC_LISTEN=()
start_bg() { # LOGFILE COMMAND...
    local logfile=$1; shift
    "$@" >>"$logfile" 2>&1 </dev/null &
    SC_PIDS+=($!)
    PIDS+=($!)
}
up() {
    local kind=$1 name=$2 spec logfile=$WORK/logs/$1-$2.log; shift 2
    case $kind in
        haproxy) start_bg "$logfile" haproxy -db -f "$HA/$name.cfg" ;;
        nginx)   start_bg "$logfile" nginx -p "$NG/$name/" -e "$WORK/logs/nginx-$name.log" \
                     -c "$NG/$name/nginx.conf" -g 'daemon off;' ;;
        stunnel) start_bg "$logfile" stunnel4 "$ST/$name.conf" ;;
        socat)   start_bg "$logfile" socat -d "TCP-LISTEN:25,bind=$L4BAL,reuseaddr,fork" "TCP:$PROXY:25,bind=$L4BAL" ;;
        auth_http) start_bg "$logfile" python3 "$AUTH_PY" "$AUTH_HTTP" "$AUTH_HTTP_PORT" "$SERVER" 10143 ;;
        *) die "unknown proxy kind $kind" ;;
    esac
    for spec in "$@"; do
        wait_listening "$kind $name" "${spec%:*}" "${spec##*:}" "$logfile"
        SC_LISTEN+=("$spec")
    done
}
down() {
    local pid spec keep=()
    for pid in "${SC_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SC_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do [[ " ${SC_PIDS[*]} " == *" $pid "* ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
    for spec in "${SC_LISTEN[@]}"; do wait_not_listening "${spec%:*}" "${spec##*:}"; done
    SC_PIDS=()
    SC_LISTEN=()
}

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
# Only the lab's own addresses: others may use the same ports elsewhere on loopback.
lab_filter() { printf 'tcp and net %s and (%s)' "$LAB_NET" "$1"; }
# cap_start FILE IFACE FILTER [extra tcpdump options...]
cap_start() {
    CAP_FILE=$1; local iface=$2 filter=$3; shift 3
    CAP_ERR=$WORK/logs/$CAP_FILE.capture.log
    log "capturing $CAP_FILE"
    tcpdump -i "$iface" -s 0 -B 65536 -U --immediate-mode -Z root -w "$WORK/out/$CAP_FILE" "$@" "$filter" >"$CAP_ERR" 2>&1 </dev/null &
    CAP_PID=$!
    cap_wait_ready "listening on"
}
# cap_ports FILE PORT... : lo, the lab's addresses, these TCP ports
cap_ports() {
    local file=$1 expr="" p; shift
    for p in "$@"; do expr+="${expr:+ or }port $p"; done
    cap_start "$file" lo "$(lab_filter "$expr")"
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
    # dumpcap says so once it has opened the interfaces, before each one's capture thread
    # runs: a session started at once was lost whole on a loaded machine (CI, 2026-12-06).
    sleep 1
}
cap_stop() {
    # tcpdump runs in immediate mode; dumpcap delivers every 250 ms or so.
    if [ "${CAP_FILE##*.}" = pcapng ]; then sleep 1.5; else sleep 0.3; fi
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
        down
        [ "$CAP_DROPPED" = 0 ] && return 0
        log "$CAP_FILE: $CAP_DROPPED packets dropped by the kernel, recording again"
    done
    die "$CAP_FILE: the capture keeps dropping packets ($CAP_DROPPED)"
}

CLIENT_LOG=$WORK/logs/clients.log
check_exit() { # TOOL LABEL EXPECT(ok|fail|any) RC
    printf '===== %s exit %s\n' "$1" "$4" >>"$CLIENT_LOG"
    if { [ "$3" = ok ] && [ "$4" != 0 ]; } || { [ "$3" = fail ] && [ "$4" = 0 ]; }; then
        tail -n 25 "$CLIENT_LOG" >&2
        die "$1 session '$2' should have ended $3 (exit $4)"
    fi
}
# swaks_run EXPECT(ok|fail) LABEL [swaks args...]   (server/port/bind in args)
swaks_run() {
    local expect=$1 label=$2 rc=0; shift 2
    printf '\n===== swaks %s (%s) =====\n' "$label" "$expect" >>"$CLIENT_LOG"
    timeout 30 swaks --ehlo client.example.test --from sender@example.net \
        --to "rcpt@example.test" --h-Subject "proxydiag capture: $label" \
        --body "proxydiag capture: $label" "$@" >>"$CLIENT_LOG" 2>&1 </dev/null || rc=$?
    check_exit swaks "$label" "$expect" "$rc"
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
    check_exit curl "$label" "$expect" "$rc"
}
curl_run() { curl_try ok "$@"; } # LABEL URL [extra curl args]
# talk EXPECT LABEL SOCAT_ADDRESS PAUSE LINE... : what an admin types into a raw
# connection (socat): each line after PAUSE seconds, then PAUSE more before closing.
talk() {
    local expect=$1 label=$2 address=$3 pause=$4 rc=0; shift 4
    printf '\n===== socat %s (%s) =====\n' "$label" "$expect" >>"$CLIENT_LOG"
    {
        local line
        for line in "$@"; do sleep "$pause"; printf '%s\r\n' "$line"; done
        sleep "$pause"
    } | timeout 30 socat -T 5 - "$address" >>"$CLIENT_LOG" 2>&1 || rc=$?
    check_exit socat "$label" "$expect" "$rc"
}

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
# sleep_until_elapsed START_EPOCH_NS SECONDS: keep a capture running at least that long.
sleep_until_elapsed() {
    local left_ms=$(( $2 * 1000 - ($(date +%s%N) - $1) / 1000000 ))
    [ "$left_ms" -gt 0 ] && sleep "$(printf '%d.%03d' $((left_ms / 1000)) $((left_ms % 1000)))"
    return 0
}

# --------------------------------------------------------------------------
# Step I. Scenarios. Each starts its proxies (up), records (cap_*), drives its
#    clients; run_scenario stops the proxies (down).
# --------------------------------------------------------------------------
TLS=(--tls-on-connect)

# Correct setups ------------------------------------------------------------
sc_v1_smtp() {        # HAProxy send-proxy (v1), public 25 -> Postfix 10025, two sessions
    up haproxy smtp_v1 "$PROXY:25"
    cap_ports haproxy-v1-smtp.pcap 25 10025
    smtp_via ok "v1 session 1" 25
    smtp_via ok "v1 session 2" 25
    cap_stop
}
sc_v2_smtp() {        # submission 587 -> 10587: plain, STARTTLS + AUTH, AUTH in clear
    up haproxy submission_v2 "$PROXY:587"
    cap_ports haproxy-v2-smtp.pcap 587 10587
    smtp_via ok "v2 plain" 587
    smtp_via ok "v2 starttls auth" 587 --tls "${AUTH_ARGS[@]}"
    smtp_via ok "v2 plaintext auth" 587 "${AUTH_ARGS[@]}"
    cap_stop
}
sc_v2ssl_smtps() {    # HAProxy terminates 465, send-proxy-v2-ssl -> submission 10587
    up haproxy smtps_v2ssl "$PROXY:465"
    cap_ports haproxy-v2ssl-smtps.pcap 465 10587
    smtp_via ok "v2-ssl smtps auth" 465 "${TLS[@]}" "${AUTH_ARGS[@]}"
    cap_stop
}
sc_v2_imap() {        # IMAP 143, IMAPS 993 terminated by HAProxy, POP3 110 -> Dovecot
    up haproxy dovecot_v2 "$PROXY:143" "$PROXY:993" "$PROXY:110"
    cap_ports haproxy-v2-imap.pcap 143 993 110 10143 10110
    curl_run "imap v2" "imap://$PROXY/INBOX"
    curl_run "imaps v2-ssl" "imaps://$PROXY/INBOX" -k
    curl_run "pop3 v2" "pop3://$PROXY/"
    cap_stop
}
sc_v2_sieve() {       # ManageSieve 4190 -> Dovecot 14190: greeting, then LOGOUT
    up haproxy sieve_v2 "$PROXY:4190"
    cap_ports haproxy-v2-sieve.pcap 4190 14190
    talk ok "sieve v2" "TCP4:$PROXY:4190,bind=$CLIENT" 0.5 "LOGOUT"
    cap_stop
}
sc_tls_passthrough() { # Stalwart's guide: 993 and 465 passed through to 10993 / 10465
    up haproxy tls_passthrough "$PROXY:993" "$PROXY:465"
    cap_ports haproxy-tls-passthrough.pcap 993 465 10993 10465
    curl_run "imaps passthrough" "imaps://$PROXY/INBOX" -k
    smtp_via ok "smtps passthrough" 465 "${TLS[@]}" "${AUTH_ARGS[@]}"
    cap_stop
}
sc_nginx_v1() {       # nginx stream proxy_protocol on (v1): 25 -> 10025, 143 -> 10143
    up nginx nginx_v1 "$PROXY:25" "$PROXY:143"
    cap_ports nginx-v1.pcap 25 143 10025 10143
    smtp_via ok "nginx v1 smtp" 25
    curl_run "nginx v1 imap" "imap://$PROXY/INBOX"
    cap_stop
}
sc_any_sll2() {       # scenario v1-smtp on the "any" pseudo-interface (Linux cooked capture)
    up haproxy smtp_v1 "$PROXY:25"
    cap_start any-sll2.pcap any "$(lab_filter "host $PROXY or host $SERVER")"
    smtp_via ok "any v1 session 1" 25
    smtp_via ok "any v1 session 2" 25
    cap_stop
}
sc_multi_if() {       # pcapng with two interfaces (lo: Ethernet, any: cooked) around one session
    up haproxy submission_v2 "$PROXY:587"
    cap_start_dumpcap multi-if.pcapng "$(lab_filter "port 587 or port 10587")" lo any
    smtp_via ok "multi-if v2" 587
    cap_stop
}
sc_nanosecond() {
    up haproxy submission_v2 "$PROXY:587"
    cap_start nanosecond.pcap lo "$(lab_filter "port 587 or port 10587")" --time-stamp-precision=nano
    smtp_via ok "nanosecond v2" 587
    cap_stop
}
sc_correct_local_checks() { # LOCAL-header checks to Dovecot plus two IMAP sessions
    cap_ports correct-with-local-checks.pcap 143 10143
    local t0
    t0=$(date +%s%N)
    up haproxy checks_imap "$PROXY:143"
    curl_run "imap behind local checks 1" "imap://$PROXY/INBOX"
    curl_run "imap behind local checks 2" "imap://$PROXY/INBOX"
    sleep_until_elapsed "$t0" 2
    down
    cap_stop
}
sc_healthchecks() {   # LOCAL-header checks to Dovecot, no client at all
    cap_ports haproxy-healthchecks.pcap 10143
    up haproxy checks_imap "$PROXY:143"
    sleep 2
    down
    cap_stop
}
sc_ssl_cn() {         # client certificates: alice's (CA-signed) and a self-signed one
    up haproxy ssl_cn "$PROXY:993"
    cap_ports haproxy-v2-ssl-cn.pcap 993 10143
    curl_run "imaps client cert" "imaps://$PROXY/INBOX" -k --cert "$WORK/client-cert.pem" --key "$WORK/client-key.pem"
    curl_run "imaps unverified client cert" "imaps://$PROXY/INBOX" -k --cert "$WORK/rogue-cert.pem" --key "$WORK/rogue-key.pem"
    cap_stop
}
sc_nginx_mail() {     # nginx mail proxy: IMAP login through auth_http, v1 header to Dovecot
    up auth_http auth "$AUTH_HTTP:$AUTH_HTTP_PORT"
    up nginx nginx_mail "$PROXY:143"
    cap_ports nginx-mail-imap.pcap 143 10143
    curl_run "nginx mail imap" "imap://$PROXY/INBOX"
    cap_stop
}

# Local tests: the client runs on the proxy host ------------------------------
sc_local_test_ipv4() { # swaks from the proxy's own address through its port 25
    up haproxy local_test "$PROXY:25" "::1:$V6_LOCAL_PORT"
    cap_ports local-test-ipv4.pcap 25 10025
    swaks_run ok "local test from the proxy host" --server "$PROXY" --port 25 --local-interface "$PROXY" --timeout 10
    cap_stop
}
sc_local_test_ipv6() { # swaks from ::1 on the proxy host: TCP6 header, IPv4 back leg
    up haproxy local_test "$PROXY:25" "::1:$V6_LOCAL_PORT"
    cap_start haproxy-ipv6.pcap lo "tcp and ((host ::1 and port $V6_LOCAL_PORT) or (net $LAB_NET and port 10025))"
    swaks_run ok "local test from ::1" --server ::1 --port "$V6_LOCAL_PORT" --local-interface ::1 --timeout 10
    cap_stop
}
sc_docker_bridge() {  # every client arrives as the Docker bridge gateway 172.17.0.1
    up haproxy docker_bridge "$PROXY:587"
    cap_ports private-client-address.pcap 587 10587
    smtp_via ok "behind a docker bridge" 587
    cap_stop
}

# Mistakes ----------------------------------------------------------------
sc_header_to_plain() { # v2 header to a Postfix listener that expects none
    up haproxy header_to_plain "$PROXY:25"
    cap_ports header-to-plain-listener.pcap 25 10025
    smtp_via fail "header to plain listener" 25 --timeout 3
    cap_stop
}
sc_no_header() {      # no header to a listener that expects one: Postfix stays silent
    up haproxy no_header "$PROXY:25"
    cap_ports no-header-to-proxy-listener.pcap 25 10025
    smtp_via fail "no header to proxy listener" 25 --timeout 3
    cap_stop
}
sc_v1_behind_tls() {  # HAProxy terminates TLS and sends v1 (TLS state lost)
    up haproxy v1_behind_tls "$PROXY:465"
    cap_ports v1-behind-tls.pcap 465 10587
    smtp_via ok "v1 behind tls" 465 "${TLS[@]}"
    cap_stop
}
sc_stunnel() {        # stunnel protocol = proxy: terminates TLS, sends v1
    up stunnel stunnel "$PROXY:465"
    cap_ports stunnel-proxy-v1.pcap 465 10587
    smtp_via ok "stunnel protocol proxy" 465 "${TLS[@]}" "${AUTH_ARGS[@]}"
    cap_stop
}
sc_tls_no_ssl_tlv() { # HAProxy terminates TLS, send-proxy-v2 without -ssl
    up haproxy tls_no_ssl_tlv "$PROXY:465"
    cap_ports tls-terminated-no-ssl-tlv.pcap 465 10587
    smtp_via ok "tls terminated, v2 without ssl tlv" 465 "${TLS[@]}"
    cap_stop
}
sc_tls_to_implicit() { # HAProxy terminates TLS and sends plaintext into 10993 / 10465
    up haproxy tls_to_implicit "$PROXY:993" "$PROXY:465"
    cap_ports tls-terminated-to-implicit-tls.pcap 993 465 10993 10465
    # An IMAP client that gets no greeting and speaks anyway; then swaks, which sends
    # QUIT when no greeting comes.
    talk any "imaps to an implicit-TLS listener" "OPENSSL:$PROXY:993,bind=$CLIENT,verify=0" 1.5 "a1 CAPABILITY"
    smtp_via fail "smtps to an implicit-TLS listener" 465 "${TLS[@]}" --timeout 2
    cap_stop
}
sc_header_to_plain_imap() { # v2 header to Dovecot's IMAP listener without haproxy = yes
    up haproxy header_to_plain_imap "$PROXY:143"
    cap_ports header-to-plain-imap.pcap 143 10143
    curl_try any "header to plain imap" "imap://$PROXY/INBOX"
    cap_stop
}
POP3_LOGIN=("USER $USER_NAME" "PASS $USER_PASS" "QUIT")
sc_pop3_to_plain() {  # POP3 USER/PASS through a v2 header into a listener that wants none
    up haproxy pop3_to_plain "$PROXY:110"
    cap_ports pop3-user-to-plain-listener.pcap 110 10110
    talk any "pop3 user to plain listener" "TCP4:$PROXY:110,bind=$CLIENT" 0.5 "${POP3_LOGIN[@]}"
    cap_stop
}
sc_pop3_no_header() { # POP3 USER/PASS with no header to a listener that expects one
    up haproxy pop3_no_header "$PROXY:110"
    cap_ports pop3-user-no-header.pcap 110 10110
    talk any "pop3 user without header" "TCP4:$PROXY:110,bind=$CLIENT" 0.5 "${POP3_LOGIN[@]}"
    cap_stop
}
sc_two_proxies() {    # two HAProxy proxies in a chain, both sending a header; all three legs
    up haproxy two_proxies "$PROXY:25" "$PROXY2:25"
    cap_ports two-proxies-both-send.pcap 25 10025
    smtp_via fail "two proxies both send" 25 --timeout 3
    cap_stop
}
sc_healthcheck_no_header() { # checks with a port of their own plus one real session
    cap_ports healthcheck-no-header.pcap 587 10587
    local t0
    t0=$(date +%s%N)
    up haproxy checks_port "$PROXY:587"
    smtp_via ok "behind connect-only checks" 587
    sleep_until_elapsed "$t0" 2
    down
    cap_stop
}
sc_l4_relay() {       # nginx L4 relay in front of HAProxy, six sessions; back legs only
    up haproxy mx_v2 "$PROXY:25"
    up nginx l4_relay "$L4BAL:25"
    cap_ports l4-balancer-loses-client.pcap 10025
    local i
    for i in 1 2 3 4 5 6; do
        swaks_run ok "behind l4 relay $i" --server "$L4BAL" --port 25 --local-interface "$CLIENT" --timeout 10
    done
    cap_stop
}
sc_chain_l4_relay() { # socat relay -> HAProxy -> Postfix, every leg captured
    up haproxy mx_v2 "$PROXY:25"
    up socat relay "$L4BAL:25"
    cap_ports chain-through-l4-relay.pcap 25 10025
    swaks_run ok "through a socat relay 1" --server "$L4BAL" --port 25 --local-interface "$CLIENT" --timeout 10
    swaks_run ok "through a socat relay 2" --server "$L4BAL" --port 25 --local-interface "$CLIENT" --timeout 10
    cap_stop
}
sc_tls_passthrough_plain() { # TLS passed through (no ssl on the bind) to a plaintext listener
    up haproxy tls_passthrough_plain "$PROXY:465"
    cap_ports tls-passthrough-to-plain.pcap 465 10587
    smtp_via fail "tls passthrough to plaintext listener (swaks)" 465 "${TLS[@]}" --timeout 3
    curl_try fail "tls passthrough to plaintext listener (curl)" "smtps://$PROXY/" --max-time 3 \
        --mail-from sender@example.net --mail-rcpt rcpt@example.test --upload-file /dev/null
    cap_stop
}
sc_nginx_expects_header() { # nginx: a correct server (587) and "listen ... proxy_protocol" (25)
    up nginx nginx_expects "$PROXY:587" "$PROXY:25"
    cap_ports nginx-expects-header-from-client.pcap 587 25 10587 10025
    smtp_via ok "nginx correct" 587
    smtp_via fail "nginx expects a header from the client" 25 --timeout 2
    cap_stop
}
# Front leg only, what "tcpdump port 25" on the proxy host shows: a proxy told to
# expect headers from its clients; swaks (SMTP, gives up with QUIT) and curl (IMAPS).
front_leg_only() { # FILE KIND NAME
    up "$2" "$3" "$PROXY:25" "$PROXY:993"
    cap_start "$1" lo "$(lab_filter "host $PROXY and (port 25 or port 993)")"
    smtp_via fail "$3: smtp to a proxy that expects a header" 25 --timeout 2
    curl_try fail "$3: imaps to a proxy that expects a header" "imaps://$PROXY/INBOX" -k --max-time 3
    cap_stop
}
sc_haproxy_accept_proxy() { front_leg_only haproxy-accept-proxy-front-leg.pcap haproxy accept_proxy; }
sc_nginx_listen_pp() { front_leg_only nginx-listen-proxy-protocol-front-leg.pcap nginx nginx_listen_pp; }

# Crafted headers over real TCP, client -> Postfix 10025 directly ---------------
crafted() { # FILE MODE
    cap_start "$1" lo "$(lab_filter "host $CLIENT and port 10025")"
    craft_run "$2"
    cap_stop
}
sc_malformed_v1() { crafted malformed-v1.pcap malformed-v1; }
sc_crc32c_mismatch() { crafted crc32c-mismatch.pcap crc32c-mismatch; }
sc_split_header() { crafted split-header.pcap split; }

for sc in sc_v1_smtp sc_v2_smtp sc_v2ssl_smtps sc_v2_imap sc_v2_sieve sc_tls_passthrough \
          sc_nginx_v1 sc_any_sll2 sc_multi_if sc_nanosecond sc_ssl_cn sc_nginx_mail \
          sc_local_test_ipv4 sc_local_test_ipv6 sc_docker_bridge \
          sc_header_to_plain sc_no_header sc_v1_behind_tls sc_stunnel sc_tls_no_ssl_tlv \
          sc_tls_to_implicit sc_header_to_plain_imap sc_pop3_to_plain sc_pop3_no_header \
          sc_two_proxies sc_l4_relay sc_chain_l4_relay sc_tls_passthrough_plain \
          sc_nginx_expects_header sc_haproxy_accept_proxy sc_nginx_listen_pp \
          sc_malformed_v1 sc_crc32c_mismatch sc_split_header \
          sc_correct_local_checks sc_healthcheck_no_header sc_healthchecks; do
    run_scenario "$sc"
done

# --------------------------------------------------------------------------
# Step J. Verify every leg with tshark and write manifest.json.
# --------------------------------------------------------------------------
# One tshark pass per capture (two at a time) writes what every check below reads:
# a line per frame with its TCP and PROXY fields, the payload in hex.
log "verifying captures with tshark"
CACHE=$WORK/tshark
mkdir -p "$CACHE"
DISSECT_FIELDS=(frame.number tcp.stream ip.src ip.dst ipv6.src ipv6.dst tcp.srcport tcp.dstport
                tcp.flags.syn tcp.flags.ack tcp.flags.fin tcp.flags.reset tcp.len tcp.payload
                proxy.v1.proto proxy.v2.cmd proxy.v2.addr_family proxy.v2.tlv.type
                proxy.src.ipv4 proxy.src.ipv6 proxy.v2.tlv.ssl.verify)
export CACHE
ls "$WORK/out" | xargs -P 2 -I{} sh -c 'tshark -r "$1/{}" -n -o tcp.try_heuristic_first:TRUE -T fields \
    -E separator=/t -E occurrence=a -E aggregator=, '"$(printf -- '-e %s ' "${DISSECT_FIELDS[@]}")"' \
    >"$CACHE/{}.tsv" 2>/dev/null' _ "$WORK/out" || die "tshark could not read the captures"
# frames FILE FILTER [AWK_ACTION]: run AWK_ACTION (default: print the payload) on every
# frame of FILE's cache that matches FILTER, an awk expression over stream, src, dst,
# sport, dport, syn, ack, fin, rst, len, payload, proxy (a header starts in this
# frame), v1, v2cmd, v2family, tlvs, psrc (header sources, space-separated) and
# verify_failed (an SSL TLV whose verify field is not 0).
frames() {
    awk -F'\t' "{
        stream = \$2; src = (\$3 != \"\") ? \$3 : \$5; dst = (\$4 != \"\") ? \$4 : \$6
        sport = \$7 + 0; dport = \$8 + 0; syn = \$9 + 0; ack = \$10 + 0; fin = \$11 + 0; rst = \$12 + 0
        len = \$13 + 0; payload = \$14; v1 = \$15; v2cmd = \$16; v2family = \$17; tlvs = \$18
        psrc = (\$19 != \"\") ? \$19 : \$20; gsub(/,/, \" \", psrc)
        proxy = (v1 != \"\" || v2cmd != \"\")
        verify_failed = (\$21 != \"\" && \$21 !~ /^(0x)?0+\$/)
    }
    ($2) { ${3:-print payload} }" "$CACHE/$(basename "$1").tsv"
}
# back_leg_summary FILE -> lines "server server_port header command ssl_tlv src family"
# per described TCP connection: a SYN from a leg source to a leg destination, the pairs
# given by LEGS ("SRC>DST ...", default the proxy to either server; e.g.
# LEGS="$PROXY>$PROXY2 $PROXY2>$SERVER" for a chain of proxies, "$CLIENT>$SERVER" for
# crafted headers sent by a client). The header columns describe the first PROXY
# header that the leg's source sent on it.
DEFAULT_LEGS="$PROXY>$SERVER $PROXY>$SERVER_PLAIN"
back_leg_summary() {
    local pair pairs=""
    for pair in ${LEGS:-$DEFAULT_LEGS}; do
        pairs+="${pairs:+ || }(src == \"${pair%%>*}\" && dst == \"${pair##*>}\")"
    done
    frames "$1" "(syn && !ack && ($pairs)) || proxy" 'print stream "|" syn "|" dport "|" src "|" dst "|" v1 "|" v2cmd "|" v2family "|" tlvs "|" psrc' |
    awk -F'|' '
        $2 == "1" { if (!($1 in port)) { port[$1] = $5 " " $3; from[$1] = $4; order[++n] = $1 } next }
        ($1 in port) && $4 == from[$1] && !($1 in hdr) {
            if ($6 != "") { h = "v1"; c = "PROXY"; fam = $6; ssl = "false" }
            else {
                h = "v2"; c = ($7 ~ /^(0x0?)?1$/) ? "PROXY" : "LOCAL"
                fam = ($8 ~ /^(0x0?)?1$/) ? "TCP4" : (($8 ~ /^(0x0?)?2$/) ? "TCP6" : "UNSPEC")
                ssl = ($9 ~ /(^|,)(0x20|32)(,|$)/) ? "true" : "false"
            }
            split($10, sources, " ")
            src = (sources[1] != "") ? sources[1] : "null"
            if (c == "LOCAL") src = "null"
            hdr[$1] = h " " c " " ssl " " src " " fam
        }
        END { for (i = 1; i <= n; i++) { s = order[i]; print port[s] " " ((s in hdr) ? hdr[s] : "none null false null null") } }'
}

MANIFEST_ENTRIES=()
VERIFY_LOG=$WORK/logs/verify.log
: >"$VERIFY_LOG"

# Byte-level facts that the leg columns cannot express (the scenario notes rely on
# them). segs FILE FILTER -> the hex payload of each data segment matching, in order.
segs() { frames "$1" "($2) && len > 0"; }
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
# fact FILE TEXT CHECK [ARGS...]: CHECK must succeed, else the script fails.
fact() {
    local file=$1 text=$2; shift 2
    "$@" "$WORK/out/$file" || die "$file: the capture does not show that $text"
    printf '   fact: %s\n' "$text" >>"$VERIFY_LOG"
}
seg_count() { # N FILTER FILE: exactly N data segments match
    [ "$(segs "$3" "$2" | grep -c . || true)" = "$1" ]
}
first_seg_is() { # HEX FILTER FILE: the first matching data segment is exactly HEX
    [ "$(segs "$3" "$2" | head -n 1)" = "$1" ]
}
first_seg_starts() { # HEX FILTER FILE: the first matching data segment starts with HEX
    nth_seg_starts 1 "$@"
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
    [ "$(frames "$3" "$2" 'print 1' | grep -c . || true)" = "$1" ]
}
frames_at_least() { # N FILTER FILE: N or more frames match (for what scheduling decides, e.g. RST or FIN)
    [ "$(frames "$3" "$2" 'print 1' | grep -c . || true)" -ge "$1" ]
}
streams_with_data() { # N FILTER FILE: exactly N TCP connections have data segments matching
    [ "$(frames "$3" "($2) && len > 0" 'print stream' | sort -u | grep -c . || true)" = "$1" ]
}
header_srcs_are() { # "SRC SRC..." FILTER FILE: the PROXY headers in matching frames name these sources, in order
    local got
    got=$(frames "$3" "($2) && proxy" 'print psrc' | tr '\n' ' ')
    [ "${got% }" = "$1" ]
}
json_str() { local s=$1; s=${s//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
json_or_null() { if [ "$1" = null ]; then printf 'null'; else json_str "$1"; fi; }
json_list() { local out="" item; for item in $1; do out+="${out:+, }\"$item\""; done; printf '[%s]' "$out"; }

# What proxydiag must report on each capture and what it must not, according to the
# findings catalog (not to what proxydiag happens to say today). An item is a code
# (PD101), a code at a severity (PD205:info), or, in must_not, a severity (error,
# warning). The first item of `must` is the first finding. Unlisted files: correct
# setups, which yield neither errors nor warnings.
declare -A MUST MUST_NOT
expect() { MUST[$1]=$2; MUST_NOT[$1]=$3; } # FILE MUST MUST_NOT
# Correct setups whose facts still deserve a finding.
expect haproxy-v1-smtp.pcap            "PD209"             "error PD205:warning"
expect any-sll2.pcap                   "PD209"             "error PD205:warning"
expect nginx-v1.pcap                   "PD209"             "error PD205:warning"
expect haproxy-tls-passthrough.pcap    ""                  "error warning PD301 PD304"
expect haproxy-v2-ssl-cn.pcap          "PD306"             "error warning"
expect correct-with-local-checks.pcap  "PD203"             "error warning"
expect haproxy-healthchecks.pcap       "PD203:warning"     "error PD101 PD403"
expect local-test-ipv4.pcap            "PD209 PD205:info"  "error PD205:warning"
expect haproxy-ipv6.pcap               "PD209 PD205:info"  "error PD205:warning"
expect private-client-address.pcap     "PD205:warning"     "error"
# Mistakes.
expect header-to-plain-listener.pcap   "PD102"             "PD101 PD103"
expect no-header-to-proxy-listener.pcap "PD101"            "PD102 PD103 PD109"
expect v1-behind-tls.pcap              "PD302"             "error PD301"
expect stunnel-proxy-v1.pcap           "PD302"             "error PD301"
expect tls-terminated-no-ssl-tlv.pcap  "PD301"             "PD302"
expect tls-terminated-to-implicit-tls.pcap "PD304"         "PD101 PD102 PD303"
expect header-to-plain-imap.pcap       "PD102"             "PD101"
expect pop3-user-to-plain-listener.pcap "PD102"            "PD101"
expect pop3-user-no-header.pcap        "PD101"             "PD102 PD109"
expect two-proxies-both-send.pcap      "PD106 PD201"       "PD103"
expect healthcheck-no-header.pcap      "PD403"             "PD101"
expect l4-balancer-loses-client.pcap   "PD202"             "error"
expect chain-through-l4-relay.pcap     "PD201"             "PD101 PD102"
expect tls-passthrough-to-plain.pcap   "PD303"             "PD304"
expect nginx-expects-header-from-client.pcap "PD109"       "PD101"
expect haproxy-accept-proxy-front-leg.pcap "PD109"         "PD101"
expect nginx-listen-proxy-protocol-front-leg.pcap "PD109"  "PD101"
expect malformed-v1.pcap               "PD103"             "PD101"
expect crc32c-mismatch.pcap            "PD103"             "PD101"
expect split-header.pcap               "PD105"             "PD101"

# describe FILE FORMAT PROXY SERVER FRONT_PORTS(json) DESCRIPTION NOTES LEG...
#   LEG = "server server_port header command ssl_tlv header_src family count"
#   count "clock:N" = as many as the clock allowed, at least N (health checks): the
#   manifest then says "count": null, "at_least": N.
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
        local sa sp h c ssl src fam cnt seen key count_json
        read -r sa sp h c ssl src fam cnt <<<"$leg"
        key="$sa $sp $h $c $ssl $src $fam"
        seen=$(printf '%s\n' "$summary" | grep -cxF "$key" || true)
        case $cnt in
            clock:*) [ "$seen" -ge "${cnt#clock:}" ] || die "$file: expected at least ${cnt#clock:} legs '$key', tshark saw $seen"
                     count_json="\"count\": null, \"at_least\": ${cnt#clock:}"
                     cnt=$seen ;;
            *)       [ "$seen" = "$cnt" ] || { printf '%s\n' "$summary" >&2; die "$file: expected $cnt legs '$key', tshark saw $seen"; }
                     count_json="\"count\": $cnt" ;;
        esac
        total_expected=$((total_expected + cnt))
        legs+="${legs:+, }{\"server\": \"$sa\", \"server_port\": $sp, \"header\": \"$h\", \"command\": $(json_or_null "$c"), \"ssl_tlv\": $ssl, \"header_src\": $(json_or_null "$src"), \"family\": $(json_or_null "$fam"), $count_json}"
    done
    [ "$total_seen" = "$total_expected" ] || { printf '%s\n' "$summary" >&2; die "$file: $total_seen legs seen, $total_expected described"; }
    [ -z "${LEGS:-}" ] || printf '   (legs: %s)\n' "$LEGS" >>"$VERIFY_LOG"
    local packets
    packets=$(capinfos -c -M "$path" 2>/dev/null | awk -F': *' '/Number of packets/ {gsub(/ /, "", $2); print $2}')
    MANIFEST_ENTRIES+=("  {\"file\": $(json_str "$file"), \"format\": \"$fmt\", \"packets\": ${packets:-null}, \"description\": $(json_str "$desc"), \"proxy\": $(json_str "$proxy"), \"server\": $(json_str "$server"), \"back_legs\": [$legs], \"front_port\": $fronts, \"notes\": $(json_str "$notes"), \"findings\": {\"must\": $(json_list "${MUST[$file]:-}"), \"must_not\": $(json_list "${MUST_NOT[$file]-error warning}")}}")
}

S=$SERVER
P=$SERVER_PLAIN
SIG_HEX=0d0a0d0a000d0a515549540a   # the v2 signature
from_server() { printf 'src == "%s" && sport == %s' "$1" "$2"; }
hex_addr() { local IFS=.; set -- $1; printf '%02x%02x%02x%02x' "$@"; }
to_server() { printf 'dst == "%s" && dport == %s' "$1" "$2"; }
MX_NOTE="The header names public port 25 and reaches Postfix's MX listener on 10025 (Stalwart's guides do the same), so PD209 applies; the client 127.80.0.10 is a loopback address (a local test in this lab), never a PD205 warning."

# Correct setups ---------------------------------------------------------------
describe haproxy-v1-smtp.pcap pcap "haproxy 2.6 send-proxy" "postfix 3.7" "[25]" \
    "Two complete SMTP sessions (EHLO, MAIL, RCPT, DATA, QUIT) from 127.80.0.10 through HAProxy send-proxy on public port 25 to Postfix's MX listener 10025, which expects the header." \
    "lo, Ethernet link type. Back leg 127.80.0.20 -> 127.80.0.30:10025 starts with a v1 line PROXY TCP4 127.80.0.10 127.80.0.20 <sport> 25. $MX_NOTE" \
    "$S 10025 v1 PROXY false 127.80.0.10 TCP4 2"
describe haproxy-v2-smtp.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[587]" \
    "Three submission sessions through HAProxy send-proxy-v2 (587 -> 10587): plain, STARTTLS with AUTH PLAIN, and AUTH PLAIN in cleartext." \
    "Session 3 carries alice@example.test's AUTH PLAIN credentials in cleartext on both legs (smtpd_tls_auth_only = no); session 2 authenticates inside STARTTLS. No SSL TLV: the client's STARTTLS happens after the header." \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 3"
describe haproxy-v2ssl-smtps.pcap pcap "haproxy 2.6 ssl crt + send-proxy-v2-ssl" "postfix 3.7" "[465]" \
    "Implicit-TLS submission (465) with AUTH PLAIN terminated by HAProxy, forwarded in plaintext to the submission listener 10587 with a v2 header carrying the SSL TLV." \
    "Front leg is TLS; back leg is plaintext, so the AUTH PLAIN credentials are readable on the back leg only. The SSL TLV makes 465 -> 10587 the correct TLS-terminating setup (no PD208). Postfix ignores the TLV and still offers STARTTLS." \
    "$S 10587 v2 PROXY true 127.80.0.10 TCP4 1"
describe haproxy-v2-imap.pcap pcap "haproxy 2.6 send-proxy-v2 / send-proxy-v2-ssl" "dovecot 2.3" "[143, 993, 110]" \
    "curl IMAP folder listing through HAProxy send-proxy-v2 (143 -> 10143), IMAPS terminated by HAProxy with send-proxy-v2-ssl (993 -> 10143), and a POP3 listing (110 -> 10110), all to Dovecot listeners with haproxy = yes." \
    "curl logs in with IMAP AUTHENTICATE PLAIN (SASL-IR) and POP3 AUTH PLAIN: cleartext credentials on both legs for 143 and 110; the IMAPS session is TLS on the front leg and cleartext, credentials included, on the back leg. Dovecot still lists STARTTLS on that back leg." \
    "$S 10143 v2 PROXY false 127.80.0.10 TCP4 1" \
    "$S 10143 v2 PROXY true 127.80.0.10 TCP4 1" \
    "$S 10110 v2 PROXY false 127.80.0.10 TCP4 1"
describe haproxy-v2-sieve.pcap pcap "haproxy 2.6 send-proxy-v2" "dovecot 2.3 managesieve" "[4190]" \
    "A ManageSieve session through HAProxy send-proxy-v2 (4190 -> 14190, haproxy = yes): Dovecot's capability greeting, then LOGOUT typed through socat." \
    "Dovecot greets with its capabilities (STARTTLS among them) and OK, answers LOGOUT with OK and closes." \
    "$S 14190 v2 PROXY false 127.80.0.10 TCP4 1"
describe haproxy-tls-passthrough.pcap pcap "haproxy 2.6 send-proxy-v2 (no ssl on the binds: TLS passed through)" "dovecot 2.3 + postfix 3.7" "[993, 465]" \
    "Stalwart's own guide: HAProxy passes implicit TLS through (993 -> Dovecot 10993, 465 -> Postfix 10465, both implicit TLS and expecting the header); curl IMAPS and swaks --tls-on-connect with AUTH PLAIN." \
    "The v2 headers carry no SSL TLV, and need none: the servers do the TLS handshake themselves right after the header, so neither PD301 nor PD304 applies. Both sessions succeed." \
    "$S 10993 v2 PROXY false 127.80.0.10 TCP4 1" \
    "$S 10465 v2 PROXY false 127.80.0.10 TCP4 1"
describe nginx-v1.pcap pcap "nginx 1.22 stream proxy_protocol on" "postfix 3.7 + dovecot 2.3" "[25, 143]" \
    "One SMTP session (25 -> 10025) and one IMAP listing (143 -> 10143) through the nginx stream module with proxy_protocol on (v1) and proxy_bind 127.80.0.20." \
    "nginx sends the v1 line as soon as it connects upstream. The IMAP login is cleartext. $MX_NOTE" \
    "$S 10025 v1 PROXY false 127.80.0.10 TCP4 1" \
    "$S 10143 v1 PROXY false 127.80.0.10 TCP4 1"
describe any-sll2.pcap pcap "haproxy 2.6 send-proxy" "postfix 3.7" "[25]" \
    "haproxy-v1-smtp's two SMTP sessions recorded with tcpdump -i any (Linux cooked capture) and the filter host 127.80.0.20 or host 127.80.0.30." \
    "Link type LINUX_SLL2 (tcpdump 4.99 / libpcap 1.10 default for -i any). $MX_NOTE" \
    "$S 10025 v1 PROXY false 127.80.0.10 TCP4 2"
describe multi-if.pcapng pcapng "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[587]" \
    "One submission session through HAProxy send-proxy-v2 (587 -> 10587) recorded by dumpcap on lo and any at once: a pcapng with two interfaces of different link types." \
    "Interface 0 is lo (EN10MB), interface 1 is any (LINUX_SLL, cooked v1 as dumpcap picks it), both with nanosecond resolution; every packet appears once per interface, so the single back-leg connection (count 1) is seen twice, the copy on interface 1 looking like retransmissions." \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 1"
describe nanosecond.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[587]" \
    "One submission session through HAProxy send-proxy-v2 (587 -> 10587) recorded with nanosecond timestamps." \
    "pcap with the nanosecond magic number a1b23c4d (tcpdump --time-stamp-precision=nano)." \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 1"
describe haproxy-v2-ssl-cn.pcap pcap "haproxy 2.6 ssl crt ca-file verify optional crt-ignore-err all + send-proxy-v2-ssl-cn" "dovecot 2.3" "[993]" \
    "Two IMAPS sessions with client certificates, terminated by HAProxy (993 -> 10143, send-proxy-v2-ssl-cn): alice's certificate, signed by the lab CA, and a self-signed one that HAProxy lets through (crt-ignore-err all)." \
    "Both headers carry the SSL TLV with client 0x07 (SSL, CERT_CONN, CERT_SESS), the version and the CN sub-TLVs (alice.example.test, mallory.example.test); verify is 0 for alice and 18 (X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) for the self-signed one, which is PD306. Both logins succeed." \
    "$S 10143 v2 PROXY true 127.80.0.10 TCP4 2"
fact haproxy-v2-ssl-cn.pcap "one header reports a verified client certificate, one a failed verification" \
    frames_count 1 "proxy && verify_failed"
LEGS="127.0.0.1>$SERVER" \
describe nginx-mail-imap.pcap pcap "nginx 1.22 mail module, proxy_protocol on, auth_http" "dovecot 2.3" "[143]" \
    "nginx's mail proxy on 143: it greets the client itself, takes AUTHENTICATE PLAIN, asks the lab's auth_http responder (a python http.server on 127.80.0.20:9180, not captured) where to go, then connects to Dovecot 10143 (haproxy = yes), sends a v1 header and logs in there with LOGIN." \
    "The back leg opens only after the client has authenticated, and it comes from 127.0.0.1: the mail module has no proxy_bind, so the kernel picks the source (Dovecot trusts 127.0.0.1 for this). The header names the client 127.80.0.10 and nginx's own address 127.80.0.20:143. The credentials cross both legs in cleartext (base64 on the front, a LOGIN literal on the back)." \
    "$S 10143 v1 PROXY false 127.80.0.10 TCP4 1"
fact nginx-mail-imap.pcap "nginx greets the client itself" \
    first_seg_starts "$(hex '* OK IMAP4 ready')" "$(from_server "$PROXY" 143)"
fact nginx-mail-imap.pcap "the back leg starts with nginx's v1 header" \
    first_seg_starts "$(hex "PROXY TCP4 $CLIENT $PROXY ")" "src == \"127.0.0.1\" && $(to_server "$S" 10143)"
describe correct-with-local-checks.pcap pcap "haproxy 2.6 send-proxy-v2 check inter 500" "dovecot 2.3" "[143]" \
    "Correct setup: HAProxy health checks send v2 LOCAL headers to Dovecot (haproxy = yes), which accepts them, and two curl IMAP sessions pass through the same backend (143 -> 10143)." \
    "About 2 s of a separate HAProxy instance: LOCAL checks from 127.80.0.20 every 500 ms (how many depends on the clock: at least one; HAProxy resets each one after Dovecot's greeting) and two IMAP logins with folder listings (v2 PROXY, client 127.80.0.10; AUTHENTICATE PLAIN in cleartext)." \
    "$S 10143 v2 LOCAL false null UNSPEC clock:1" \
    "$S 10143 v2 PROXY false 127.80.0.10 TCP4 2"
describe haproxy-healthchecks.pcap pcap "haproxy 2.6 send-proxy-v2 check inter 500" "dovecot 2.3" "[]" \
    "About 2 s of HAProxy health checks to Dovecot 10143 (haproxy = yes) with no client traffic; each check sends a v2 LOCAL header." \
    "16-byte LOCAL headers (AF_UNSPEC, no addresses, no TLVs) every 500 ms from 127.80.0.20 (at least one; the count depends on the clock); Dovecot greets each, HAProxy resets it. Every connection of the endpoint is LOCAL, so PD203 is a warning. Never pointed at Postfix: Postfix 3.7's smtpd dies on LOCAL headers and its master throttles the service." \
    "$S 10143 v2 LOCAL false null UNSPEC clock:1"
describe local-test-ipv4.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[25]" \
    "Local test: swaks on the proxy host itself, from the proxy's own address 127.80.0.20 to its port 25 (-> Postfix 10025)." \
    "The header names 127.80.0.20 -> 127.80.0.20:25: the client is the proxy host, a loopback address, so the report says local test at info level, not PD205's warning that the client's address was lost. The session succeeds. The header names public port 25 and reaches 10025, so PD209 applies." \
    "$S 10025 v2 PROXY false 127.80.0.20 TCP4 1"
describe haproxy-ipv6.pcap pcap "haproxy 2.6 send-proxy-v2, tcp-request connection set-dst-port int(25)" "postfix 3.7" "[$V6_LOCAL_PORT]" \
    "Local test over IPv6: swaks from ::1 on the proxy host to HAProxy's SMTP listener on ::1, forwarded over IPv4 to Postfix 10025 with a v2 TCP6 header." \
    "Front leg ::1 -> [::1]:$V6_LOCAL_PORT (port 25 on ::1 belongs to the machine, so HAProxy listens on $V6_LOCAL_PORT and set-dst-port makes the header name 25, as a listener on [::1]:25 would); back leg 127.80.0.20 -> 127.80.0.30:10025; the header's addresses are ::1 -> ::1 port 25. A loopback client is a local test (info), never a PD205 warning; PD209 applies (25 -> 10025)." \
    "$S 10025 v2 PROXY false ::1 TCP6 1"
describe private-client-address.pcap pcap "haproxy 2.6 send-proxy-v2, tcp-request connection set-src ipv4(172.17.0.1)" "postfix 3.7" "[587]" \
    "HAProxy behind Docker's userland proxy: every client arrives from the bridge gateway 172.17.0.1, so the header names a private (RFC 1918) address on the internet-facing submission port (587 -> 10587)." \
    "set-src stands in for the Docker bridge, which loopback cannot host: the front leg comes from 127.80.0.10, the header says 172.17.0.1 -> 127.80.0.20:587. The real client's address was lost before the proxy: PD205 stays a warning for private ranges. The session succeeds." \
    "$S 10587 v2 PROXY false 172.17.0.1 TCP4 1"

# Mistakes -------------------------------------------------------------------
describe header-to-plain-listener.pcap pcap "haproxy 2.6 send-proxy-v2" "postfix 3.7" "[25]" \
    "Mistake: HAProxy sends a v2 header to a Postfix MX listener (127.80.0.31:10025) that does not expect one; Postfix greets, then answers the header pieces with 500 and the QUIT in the signature ends the session." \
    "Postfix logs improper command pipelining after CONNECT with the header bytes; the 220 greeting, three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye reach the client, whose EHLO fails. 127.80.0.31:10025 has smtpd_upstream_proxy_protocol unset, as a Stalwart listener that does not trust the proxy would." \
    "$P 10025 v2 PROXY false 127.80.0.10 TCP4 1"
describe no-header-to-proxy-listener.pcap pcap "haproxy 2.6 (no send-proxy)" "postfix 3.7" "[25]" \
    "Mistake: HAProxy without send-proxy in front of a Postfix listener (10025) that expects a header; Postfix never greets and swaks times out after 3 s." \
    "No PROXY header: the back leg stays silent for 3 s, then swaks gives up and sends QUIT, which HAProxy forwards; Postfix reads it as a header (log: short protocol header), answers 421 4.3.0 Server local error and resets the connection." \
    "$S 10025 none null false null null 1"
describe v1-behind-tls.pcap pcap "haproxy 2.6 ssl crt + send-proxy" "postfix 3.7" "[465]" \
    "Mistake: HAProxy terminates implicit TLS (465) but sends a v1 header to the submission listener 10587: v1 cannot say that the client used TLS." \
    "The session itself succeeds; the back leg is plaintext after a v1 line, so the server believes the client spoke plaintext." \
    "$S 10587 v1 PROXY false 127.80.0.10 TCP4 1"
describe stunnel-proxy-v1.pcap pcap "stunnel 5.68 protocol = proxy" "postfix 3.7" "[465]" \
    "Mistake: stunnel terminates implicit TLS on 465 and, with protocol = proxy, sends a v1 header to the submission listener 10587: the TLS state is lost." \
    "stunnel connects from 127.80.0.20 (local =) once the client's handshake is done and writes PROXY TCP4 127.80.0.10 127.80.0.20 <sport> 465; swaks authenticates with AUTH PLAIN, readable on the back leg only. The session succeeds." \
    "$S 10587 v1 PROXY false 127.80.0.10 TCP4 1"
fact stunnel-proxy-v1.pcap "the front leg opens with a TLS handshake record" \
    first_seg_starts 16 "src == \"$CLIENT\" && dport == 465"
describe tls-terminated-no-ssl-tlv.pcap pcap "haproxy 2.6 ssl crt + send-proxy-v2" "postfix 3.7" "[465]" \
    "Mistake: HAProxy terminates implicit TLS (465) but sends send-proxy-v2 without -ssl to 10587: the v2 header has no SSL TLV, so the server cannot know that the client used TLS." \
    "Front leg 127.80.0.10 -> 127.80.0.20:465 opens with a TLS ClientHello; the back leg to 10587 is plaintext after a 28-byte v2 header without TLVs. The session succeeds, and Postfix offers STARTTLS on the back leg to a client that is already encrypted." \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 1"
fact tls-terminated-no-ssl-tlv.pcap "the front leg opens with a TLS handshake record" \
    first_seg_starts 16 "src == \"$CLIENT\" && dport == 465"
fact tls-terminated-no-ssl-tlv.pcap "the back-leg header declares 12 bytes (addresses only, no TLV)" \
    first_seg_starts "${SIG_HEX}2111000c" "src == \"$PROXY\" && $(to_server "$S" 10587)"
fact tls-terminated-no-ssl-tlv.pcap "Postfix offers STARTTLS on the back leg" \
    segs_contain "$(hex 250-STARTTLS)" "$(from_server "$S" 10587)"
describe tls-terminated-to-implicit-tls.pcap pcap "haproxy 2.6 ssl crt + send-proxy-v2-ssl" "dovecot 2.3 + postfix 3.7" "[993, 465]" \
    "Mistake: HAProxy terminates TLS (993, 465) and sends plaintext, after a v2 header with the SSL TLV, into the implicit-TLS listeners Dovecot 10993 and Postfix 10465 (both haproxy-enabled)." \
    "Both servers accept the header and wait for a ClientHello, silent. On 993 the client (socat) gets no greeting and types a1 CAPABILITY after 1.5 s: the plaintext reaches 10993 and Dovecot hangs up (FIN). On 465 swaks waits 2 s for a greeting and sends QUIT: Postfix resets. Neither server sends a byte." \
    "$S 10993 v2 PROXY true 127.80.0.10 TCP4 1" \
    "$S 10465 v2 PROXY true 127.80.0.10 TCP4 1"
fact tls-terminated-to-implicit-tls.pcap "neither implicit-TLS listener sends a byte" \
    seg_count 0 "src == \"$S\""
fact tls-terminated-to-implicit-tls.pcap "the client's plaintext follows the header into 10993" \
    nth_seg_starts 2 "$(hex 'a1 CAPABILITY')" "src == \"$PROXY\" && $(to_server "$S" 10993)"
fact tls-terminated-to-implicit-tls.pcap "swaks's QUIT follows the header into 10465" \
    nth_seg_starts 2 "$(hex 'QUIT')" "src == \"$PROXY\" && $(to_server "$S" 10465)"
fact tls-terminated-to-implicit-tls.pcap "Dovecot hangs up on 10993" \
    frames_at_least 1 "$(from_server "$S" 10993) && (fin == 1 || rst == 1)"
fact tls-terminated-to-implicit-tls.pcap "Postfix hangs up on 10465" \
    frames_at_least 1 "$(from_server "$S" 10465) && (fin == 1 || rst == 1)"
describe header-to-plain-imap.pcap pcap "haproxy 2.6 send-proxy-v2" "dovecot 2.3" "[143]" \
    "Mistake: HAProxy sends a v2 header to Dovecot's IMAP listener 127.80.0.31:10143, which has no haproxy = yes; Dovecot greets and answers the header bytes as IMAP commands." \
    "Dovecot greets (* OK, with its capabilities, or * OK Waiting for authentication process to respond. when its auth process is still busy), then answers * BAD Error in IMAP command received by server. and ends with * BYE Too many invalid IMAP commands.; curl's login fails. Dovecot logs the proxy's address (rip=127.80.0.20) as the client." \
    "$P 10143 v2 PROXY false 127.80.0.10 TCP4 1"
fact header-to-plain-imap.pcap "Dovecot greets first" \
    first_seg_starts "$(hex '* OK ')" "$(from_server "$P" 10143)"
fact header-to-plain-imap.pcap "Dovecot answers * BAD Error in IMAP command received by server." \
    segs_contain "$(hex $'* BAD Error in IMAP command received by server.\r\n')" "$(from_server "$P" 10143)"
fact header-to-plain-imap.pcap "Dovecot ends with * BYE Too many invalid IMAP commands." \
    segs_contain "$(hex '* BYE Too many invalid IMAP commands.')" "$(from_server "$P" 10143)"
describe pop3-user-to-plain-listener.pcap pcap "haproxy 2.6 send-proxy-v2" "dovecot 2.3" "[110]" \
    "Mistake: HAProxy sends a v2 header to Dovecot's POP3 listener 127.80.0.31:10110, which has no haproxy = yes; the client (socat, as an admin would type) logs in with USER alice@example.test and PASS." \
    "Dovecot greets +OK, answers the header pieces with -ERR Unknown command. and closes; the client's USER alice@example.test still crosses both legs (Dovecot resets then), its PASS reaches the front leg only. The user name and the password must never be printed unmasked." \
    "$P 10110 v2 PROXY false 127.80.0.10 TCP4 1"
fact pop3-user-to-plain-listener.pcap "Dovecot answers the header with -ERR" \
    segs_contain "$(hex '-ERR Unknown command.')" "$(from_server "$P" 10110)"
fact pop3-user-to-plain-listener.pcap "the user name crosses the back leg" \
    segs_contain "$(hex "USER $USER_NAME")" "src == \"$PROXY\" && $(to_server "$P" 10110)"
describe pop3-user-no-header.pcap pcap "haproxy 2.6 (no send-proxy)" "dovecot 2.3" "[110]" \
    "Mistake: HAProxy without send-proxy in front of Dovecot's POP3 listener 10110 (haproxy = yes); the client gets no greeting and types USER alice@example.test and PASS." \
    "Dovecot waits for a header; the USER line arrives instead (Failed to read valid HAproxy data) and Dovecot resets. HAProxy closes the front leg; the PASS line reaches it and gets a reset. The user name crosses both legs, the password the front leg. Neither must be printed unmasked." \
    "$S 10110 none null false null null 1"
fact pop3-user-no-header.pcap "the back leg's first bytes are the USER line" \
    first_seg_is "$(hex $"USER $USER_NAME"$'\r\n')" "src == \"$PROXY\" && $(to_server "$S" 10110)"
fact pop3-user-no-header.pcap "Dovecot sends no byte and hangs up" \
    frames_at_least 1 "$(from_server "$S" 10110) && (fin == 1 || rst == 1)"
fact pop3-user-no-header.pcap "Dovecot sends no byte" frames_count 0 "$(from_server "$S" 10110) && len > 0"
LEGS="$PROXY>$PROXY2 $PROXY2>$SERVER" \
describe two-proxies-both-send.pcap pcap "haproxy 2.6 send-proxy-v2, two proxies in a chain" "postfix 3.7" "[25]" \
    "Mistake: two HAProxy proxies in a chain both send a v2 header: A (127.80.0.20:25) sends one to B (127.80.0.21:25, whose bind has no accept-proxy), and B puts its own header in front of A's." \
    "All three legs: client 127.80.0.10 -> A 127.80.0.20:25; A -> B 127.80.0.20 -> 127.80.0.21:25 with A's header (client 127.80.0.10); B -> Postfix 127.80.0.21 -> 127.80.0.30:10025 with B's header, which names A's address 127.80.0.20 as the client, followed by A's 28-byte header as data. Postfix accepts B's header, greets with 220, answers A's header with three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye (the QUIT in the signature) and closes; swaks fails. back_legs lists A's leg to B and B's leg to Postfix." \
    "$PROXY2 25 v2 PROXY false 127.80.0.10 TCP4 1" \
    "$S 10025 v2 PROXY false 127.80.0.20 TCP4 1"
fact two-proxies-both-send.pcap "B's leg to Postfix carries two v2 headers: B's (client 127.80.0.20), then A's (client 127.80.0.10)" \
    header_srcs_are "$PROXY $CLIENT" "src == \"$PROXY2\" && $(to_server "$S" 10025)"
fact two-proxies-both-send.pcap "Postfix greets B's leg" first_seg_starts "$(hex '220 mail.example.test')" "$(from_server "$S" 10025)"
fact two-proxies-both-send.pcap "Postfix answers three 500 5.5.2 Error: bad syntax and 221 2.0.0 Bye" \
    segs_contain "$(hex $'500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n221 2.0.0 Bye\r\n')" "$(from_server "$S" 10025)"
describe healthcheck-no-header.pcap pcap "haproxy 2.6 send-proxy-v2 check port 10587 inter 300" "postfix 3.7" "[587]" \
    "Mistake: HAProxy health checks with a port of their own (check port 10587) send no PROXY header to a Postfix submission listener that expects one; one real session through the same backend (587 -> 10587) carries a v2 header." \
    "About 2 s of a separate HAProxy instance: every 300 ms a connect-only check from 127.80.0.20 (SYN, SYN-ACK, then RST from HAProxy; no byte either way; how many depends on the clock, at least one), plus one swaks session through 127.80.0.20:587 with a v2 header naming 127.80.0.10." \
    "$S 10587 none null false null null clock:1" \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 1"
fact healthcheck-no-header.pcap "only the real session carries data to or from Postfix" \
    streams_with_data 1 "sport == 10587 || dport == 10587"
describe l4-balancer-loses-client.pcap pcap "nginx 1.22 stream without proxy_protocol (L4 relay) + haproxy 2.6 send-proxy-v2" "postfix 3.7" "[]" \
    "Mistake: a plain L4 relay (nginx stream without proxy_protocol, 127.80.0.15:25) in front of HAProxy: six SMTP sessions from 127.80.0.10, every header names the relay 127.80.0.15; only the back legs (port 10025) are captured." \
    "Per session: 127.80.0.10 -> 127.80.0.15:25 (nginx, proxy_bind 127.80.0.15) -> 127.80.0.20:25 (no header) -> 127.80.0.30:10025 (v2 header, client 127.80.0.15); the capture holds the last leg only, so nothing in it shows that 127.80.0.15 is a relay: the sign is one address for every session (PD202). All six sessions succeed." \
    "$S 10025 v2 PROXY false 127.80.0.15 TCP4 6"
LEGS="$L4BAL>$PROXY $PROXY>$SERVER" \
describe chain-through-l4-relay.pcap pcap "socat (L4 relay) + haproxy 2.6 send-proxy-v2" "postfix 3.7" "[25]" \
    "Mistake: client -> plain L4 relay (socat on 127.80.0.15:25) -> HAProxy (127.80.0.20:25, send-proxy-v2) -> Postfix 10025, two sessions, every leg captured: each header names the relay, which the capture shows as the TCP source of the leg into the proxy." \
    "Three legs per session: 127.80.0.10 -> 127.80.0.15:25; 127.80.0.15 -> 127.80.0.20:25 (no header); 127.80.0.20 -> 127.80.0.30:10025 (v2 header, client 127.80.0.15). Both sessions succeed." \
    "$PROXY 25 none null false null null 2" \
    "$S 10025 v2 PROXY false 127.80.0.15 TCP4 2"
describe tls-passthrough-to-plain.pcap pcap "haproxy 2.6 send-proxy-v2 (no ssl on the bind: TLS passed through)" "postfix 3.7" "[465]" \
    "Mistake: HAProxy passes implicit TLS on 465 through (mode tcp, no ssl on the bind) to Postfix's plaintext submission listener 10587: after the header the client's ClientHello reaches a server that speaks plaintext." \
    "Two clients, each with its own real ClientHello: swaks --tls-on-connect and curl smtps://. Postfix accepts the header and greets in plaintext (220); the ClientHello follows the header on the back leg, and Postfix answers its bytes as commands (500 5.5.2 Error: bad UTF-8 syntax / bad syntax; their number depends on the random bytes). The clients fail (wrong version number) and reset." \
    "$S 10587 v2 PROXY false 127.80.0.10 TCP4 2"
fact tls-passthrough-to-plain.pcap "Postfix greets the back leg in plaintext" \
    first_seg_starts "$(hex '220 mail.example.test')" "$(from_server "$S" 10587)"
fact tls-passthrough-to-plain.pcap "the back leg carries the header, then a TLS handshake record" \
    nth_seg_starts 2 16 "src == \"$PROXY\" && $(to_server "$S" 10587)"
describe nginx-expects-header-from-client.pcap pcap "nginx 1.22 stream: proxy_protocol on; and listen ... proxy_protocol" "postfix 3.7" "[587, 25]" \
    "Mistake: an nginx stream server with listen 127.80.0.20:25 proxy_protocol expects a header from its clients; next to it a correct server (587, proxy_protocol on only) forwards one session." \
    "587 (correct): one swaks session, back leg to 10587 with a v1 header. 25 (listen ... proxy_protocol): swaks waits for a greeting, nginx waits for a header; after 2 s swaks sends QUIT, nginx logs broken header: \"QUIT\" while reading PROXY protocol and resets the connection without ever connecting to Postfix, so that session has no back leg." \
    "$S 10587 v1 PROXY false 127.80.0.10 TCP4 1"
fact nginx-expects-header-from-client.pcap "the client's only bytes to 25 are QUIT" \
    first_seg_is "$(hex $'QUIT\r\n')" "src == \"$CLIENT\" && dport == 25"
fact nginx-expects-header-from-client.pcap "nginx sends no byte on 25" seg_count 0 "$(from_server "$PROXY" 25)"
fact nginx-expects-header-from-client.pcap "nginx resets the connection on 25" \
    frames_count 1 "$(from_server "$PROXY" 25) && rst == 1"
front_leg_facts() { # FILE
    fact "$1" "no leg leaves the proxy" frames_count 0 "src == \"$PROXY\" && syn == 1 && ack == 0"
    fact "$1" "the proxy sends no byte" seg_count 0 "src == \"$PROXY\""
    fact "$1" "the client's only bytes to 25 are QUIT" first_seg_is "$(hex $'QUIT\r\n')" "src == \"$CLIENT\" && dport == 25"
    fact "$1" "the client's first bytes to 993 are a TLS handshake record" first_seg_starts 16 "src == \"$CLIENT\" && dport == 993"
    fact "$1" "the proxy resets both connections" frames_count 2 "src == \"$PROXY\" && rst == 1"
}
FRONT_LEG_NOTE="Captured as tcpdump port 25 or port 993 on the proxy host shows it: the proxy never connects on, so there is no back leg. swaks waits 2 s for a greeting and sends QUIT; curl imaps:// sends its ClientHello. Neither is a PROXY header, and the proxy resets both connections without a byte."
describe haproxy-accept-proxy-front-leg.pcap pcap "haproxy 2.6 bind ... accept-proxy" "none reached" "[25, 993]" \
    "Mistake, front leg only: HAProxy's binds on 25 and 993 (ssl) carry accept-proxy, so HAProxy expects a header from its clients instead of only sending one to the server." \
    "$FRONT_LEG_NOTE HAProxy logs Received something which does not look like a PROXY protocol header."
front_leg_facts haproxy-accept-proxy-front-leg.pcap
describe nginx-listen-proxy-protocol-front-leg.pcap pcap "nginx 1.22 stream listen ... proxy_protocol" "none reached" "[25, 993]" \
    "Mistake, front leg only: nginx stream servers with listen 127.80.0.20:25 proxy_protocol and listen 127.80.0.20:993 proxy_protocol expect a header from their clients." \
    "$FRONT_LEG_NOTE nginx logs broken header while reading PROXY protocol."
front_leg_facts nginx-listen-proxy-protocol-front-leg.pcap

TO_PF="$(to_server "$S" 10025)"
FROM_PF="$(from_server "$S" 10025)"
CRAFT_PROXY="none: crafted bytes from a python3 socket client (127.80.0.10) straight to the server"
LEGS="$CLIENT>$SERVER" \
describe malformed-v1.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted malformed v1 header (leading zero in the destination port) sent straight to a Postfix listener that expects a header." \
    "The client (127.80.0.10) sends PROXY TCP4 203.0.113.7 127.80.0.30 40000 070 CRLF to 127.80.0.30:10025. Postfix logs haproxy read: bad or missing server port, answers 421 4.3.0 mail.example.test Server local error and resets. Wireshark still decodes the line as a v1 header. The back leg here is the client's own connection; 203.0.113.7 appears only inside the header." \
    "$S 10025 v1 PROXY false 203.0.113.7 TCP4 1"
fact malformed-v1.pcap "the client's first segment is exactly the crafted line" \
    first_seg_is "$(hex $"PROXY TCP4 203.0.113.7 $SERVER 40000 070"$'\r\n')" "src == \"$CLIENT\" && $TO_PF"
fact malformed-v1.pcap "Postfix answers 421 4.3.0" first_seg_starts "$(hex '421 4.3.0')" "$FROM_PF"
# Postfix resets when the client's next line is unread as it closes, and sends a FIN when it
# read that line first: which one happens is the scheduler's choice, so either ends it.
fact malformed-v1.pcap "Postfix ends the connection" frames_at_least 1 "$FROM_PF && (rst == 1 || fin == 1)"
LEGS="$CLIENT>$SERVER" \
describe crc32c-mismatch.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted v2 header with a CRC32C TLV whose checksum is wrong (0xDEADBEEF), sent straight to a Postfix listener that expects a header; Postfix does not check the CRC and the session goes on." \
    "35-byte header: PROXY TCP4 203.0.113.7:40000 -> 127.80.0.30:10025, one TLV type 0x03 (CRC32C) length 4 value DEADBEEF (the script prints the correct CRC32C into its client log). Postfix greets (220), answers EHLO and QUIT (221). The back leg here is the client's own connection." \
    "$S 10025 v2 PROXY false 203.0.113.7 TCP4 1"
fact crc32c-mismatch.pcap "the client's first segment is exactly the crafted header" \
    first_seg_is "${SIG_HEX}21110013cb007107$(hex_addr "$SERVER")9c402729030004deadbeef" "src == \"$CLIENT\" && $TO_PF"
fact crc32c-mismatch.pcap "Postfix greets and ends with 221" segs_contain "$(hex $'221 2.0.0 Bye\r\n')" "$FROM_PF"
LEGS="$CLIENT>$SERVER" \
describe split-header.pcap pcap "$CRAFT_PROXY" "postfix 3.7" "[]" \
    "Crafted valid v2 header sent in two send() calls 200 ms apart (TCP_NODELAY) straight to a Postfix listener that expects a header: Postfix reads the first segment alone, refuses it and resets, so the second part never leaves the client." \
    "Intended: 16 bytes (signature, 0x21, 0x11, length 12), then 200 ms later the 12-byte address block (203.0.113.7:40000 -> 127.80.0.30:10025). On the wire: the 16-byte segment only. Postfix peeks once, logs haproxy read: short version 2 protocol header, answers 421 4.3.0 mail.example.test Server local error and resets within a millisecond; the client's second send fails with ECONNRESET. header_src is null: the address block is not in the capture. HAProxy 2.6 accept-proxy (Truncated PROXY protocol header received) and nginx 1.22 listen proxy_protocol (header is too large) refuse a header split this way too." \
    "$S 10025 v2 PROXY false null TCP4 1"
fact split-header.pcap "the client sent one 16-byte segment, the header's first 16 bytes" \
    first_seg_is "${SIG_HEX}2111000c" "src == \"$CLIENT\" && $TO_PF"
fact split-header.pcap "the second part of the header never left the client" seg_count 1 "src == \"$CLIENT\" && $TO_PF"
fact split-header.pcap "Postfix answers 421 4.3.0" first_seg_starts "$(hex '421 4.3.0')" "$FROM_PF"
fact split-header.pcap "Postfix ends the connection" frames_at_least 1 "$FROM_PF && (rst == 1 || fin == 1)"

# Every capture is described, and every description has a capture.
[ "${#MANIFEST_ENTRIES[@]}" = "$(ls "$WORK/out" | wc -l)" ] \
    || die "$(ls "$WORK/out" | wc -l) captures recorded, ${#MANIFEST_ENTRIES[@]} described"
for file in "${!MUST[@]}"; do [ -s "$WORK/out/$file" ] || die "findings listed for $file, which was not recorded"; done

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
