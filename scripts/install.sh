#!/usr/bin/env bash
# Installs kronos-bot on a Linux VM as two systemd services (run as root from a checkout of the repo):
#   user/group kronos-bot, venv in /opt/kronos-bot/venv (CPU torch first), /etc/kronos-bot/bot.yaml,
#   /etc/kronos-bot/kronos-bot.env (mode 0600), units in /etc/systemd/system, daemon-reload, enable.
# Re-running upgrades the code and keeps an existing bot.yaml and env file.
# Options (env): PREFIX=/opt/kronos-bot ETC=/etc/kronos-bot START=1 (start the services at the end).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/kronos-bot}
ETC=${ETC:-/etc/kronos-bot}
USER_NAME=kronos-bot
START=${START:-0}

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
command -v systemctl >/dev/null || die "systemd is required"
command -v python3 >/dev/null || die "python3 (>= 3.11) is required"

if ! id "$USER_NAME" >/dev/null 2>&1; then
    say "creating system user $USER_NAME"
    useradd --system --home-dir /var/lib/kronos-bot --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi

say "copying the code to $PREFIX/src"
mkdir -p "$PREFIX"
rm -rf "$PREFIX/src.new"
mkdir -p "$PREFIX/src.new"
tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=var --exclude=.env -cf - . | tar -C "$PREFIX/src.new" -xf -
rm -rf "$PREFIX/src.old"
[[ -d "$PREFIX/src" ]] && mv "$PREFIX/src" "$PREFIX/src.old"
mv "$PREFIX/src.new" "$PREFIX/src"
cp "$PREFIX/src/README.md" "$PREFIX/README.md"

say "installing into $PREFIX/venv (CPU torch first)"
# A regular (non-editable) install, so the service does not depend on the source tree.
VENV="$PREFIX/venv" bash "$PREFIX/src/scripts/setup.sh"
"$PREFIX/venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$PREFIX/src"

install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [[ ! -f "$ETC/bot.yaml" ]]; then
    install -m 0640 -o root -g "$USER_NAME" "$SRC/config/bot.yaml" "$ETC/bot.yaml"
    sed -i 's#^  path: var/kronos-bot.sqlite .*#  path: /var/lib/kronos-bot/journal.sqlite   # SQLite journal#' "$ETC/bot.yaml"
    say "wrote $ETC/bot.yaml (edit it, then: kronos-bot config check --config $ETC/bot.yaml)"
else
    say "keeping existing $ETC/bot.yaml"
fi
if [[ ! -f "$ETC/kronos-bot.env" ]]; then
    install -m 0600 -o root -g root "$SRC/.env.example" "$ETC/kronos-bot.env"
    sed -i "s#^KRONOS_BOT_CONFIG=.*#KRONOS_BOT_CONFIG=$ETC/bot.yaml#" "$ETC/kronos-bot.env"
    say "wrote $ETC/kronos-bot.env (mode 0600): put your Alpaca paper keys there"
else
    chmod 0600 "$ETC/kronos-bot.env"
    say "keeping existing $ETC/kronos-bot.env"
fi

"$PREFIX/venv/bin/kronos-bot" config check --config "$ETC/bot.yaml" >/dev/null \
    || die "$ETC/bot.yaml does not validate; fix it and re-run"

say "installing systemd units"
for unit in kronos-forecaster.service kronos-trader.service; do
    sed "s#/opt/kronos-bot#$PREFIX#g; s#/etc/kronos-bot#$ETC#g" "$SRC/systemd/$unit" > "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable kronos-forecaster.service kronos-trader.service
if [[ "$START" == 1 ]]; then
    systemctl restart kronos-forecaster.service kronos-trader.service
    say "started; follow decisions with: journalctl -u kronos-trader -f -o cat | $PREFIX/venv/bin/kronos-bot logs --follow"
else
    say "enabled. Start with: systemctl start kronos-forecaster kronos-trader"
fi
