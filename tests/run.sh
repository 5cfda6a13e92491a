#!/usr/bin/env bash
# Installs everything the test suite needs (Debian packages for the real proxies, mail
# servers and capture tools; the Python package with its test extras), then runs every
# tier: fast, lab, soak, fuzz and slow (pyproject.toml's markers).
#   bash tests/run.sh            every tier (CI's gate)
#   bash tests/run.sh --quick    the fast tier only: no Debian package needed
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
if [ "${1:-}" = "--quick" ]; then
    quick=true
    shift
fi

debian_packages=(haproxy nginx libnginx-mod-stream libnginx-mod-mail stunnel4 postfix dovecot-imapd dovecot-pop3d
                 dovecot-managesieved tcpdump tshark swaks curl openssl socat caddy prometheus chromium)
missing=()
$quick && debian_packages=()
for package in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q -e '.[test]'
python3 -m mypy            # types fail the build: the settings are in pyproject.toml
python3 -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"  # the layers fail the build: pyproject.toml's contracts
if $quick; then
    exec python3 -m pytest -q "$@"          # pyproject's addopts select the fast tier
fi
exec python3 -m pytest -q -m "" -n 0 "$@"   # every tier, in one process
