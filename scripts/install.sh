#!/usr/bin/env bash
# Install AIONBD as a systemd service:
#   binary        $PREFIX/bin/aionbd                 (PREFIX=/usr/local)
#   unit          /etc/systemd/system/aionbd.service
#   service user  /etc/sysusers.d/aionbd.conf, applied with systemd-sysusers
#   config        /etc/aionbd/aionbd.toml            (root:aionbd 0640; an existing one is kept)
#   env example   /etc/aionbd/aionbd.env.example     (copy to aionbd.env, chmod 600)
#   docs          $PREFIX/share/doc/aionbd/          (README.md, deploy/README.md, config.toml, LICENSE)
#
# Usage (from a release tarball or the repository):
#   sudo scripts/install.sh [--bin PATH]
#   DESTDIR=/tmp/stage scripts/install.sh --bin PATH     (staged, no root needed)
# The binary is --bin, else ./aionbd of a release tarball, else
# target/dist/dist/aionbd (scripts/release.sh), else target/release/aionbd.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
bin=

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --bin=*) bin=${1#--bin=}; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$bin" ]; then
  for c in "$root/aionbd" "$root/target/dist/dist/aionbd" "$root/target/release/aionbd"; do
    if [ -f "$c" ] && [ -x "$c" ]; then bin=$c; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "install.sh: no aionbd binary (build it, or pass --bin PATH)" >&2
  exit 1
fi
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or set DESTDIR= to stage into a directory)" >&2
  exit 1
fi

src=$root/deploy/systemd
for f in aionbd.service aionbd.toml aionbd.env.example aionbd.sysusers; do
  [ -f "$src/$f" ] || { echo "install.sh: missing $src/$f" >&2; exit 1; }
done

bindir=$DESTDIR$PREFIX/bin
docdir=$DESTDIR$PREFIX/share/doc/aionbd
unitdir=$DESTDIR/etc/systemd/system
confdir=$DESTDIR/etc/aionbd
sysusersdir=$DESTDIR/etc/sysusers.d
upgrade=no
[ -e "$unitdir/aionbd.service" ] && upgrade=yes

# Binary: install(1) writes a new file and renames it over the old one, so a
# running server keeps its old inode until it is restarted.
install -d -m 0755 "$bindir" "$docdir" "$unitdir" "$confdir" "$sysusersdir"
install -m 0755 "$bin" "$bindir/aionbd"

# Unit, with the binary's path if PREFIX is not /usr/local.
sed "s|/usr/local/bin/aionbd|$PREFIX/bin/aionbd|; s|/usr/local/share/doc/aionbd|$PREFIX/share/doc/aionbd|" \
  "$src/aionbd.service" > "$unitdir/aionbd.service.tmp"
chmod 0644 "$unitdir/aionbd.service.tmp"
mv -f "$unitdir/aionbd.service.tmp" "$unitdir/aionbd.service"

# Service user.
install -m 0644 "$src/aionbd.sysusers" "$sysusersdir/aionbd.conf"
# Staged (DESTDIR) installs leave that to the target system (a package's
# postinst, or systemd-sysusers at boot, which reads /etc/sysusers.d).
if [ -z "$DESTDIR" ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "$sysusersdir/aionbd.conf"
  elif ! getent passwd aionbd >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/aionbd \
      --shell /usr/sbin/nologin --comment "AIONBD vector database" aionbd
  fi
fi

# Config: never overwrite the operator's file; the shipped one goes beside it.
config_note="installed $confdir/aionbd.toml"
if [ -e "$confdir/aionbd.toml" ]; then
  install -m 0640 "$src/aionbd.toml" "$confdir/aionbd.toml.dist"
  config_note="kept the existing $confdir/aionbd.toml (the shipped one is aionbd.toml.dist beside it)"
else
  install -m 0640 "$src/aionbd.toml" "$confdir/aionbd.toml"
fi
install -m 0644 "$src/aionbd.env.example" "$confdir/aionbd.env.example"
if [ -z "$DESTDIR" ]; then
  chgrp aionbd "$confdir/aionbd.toml"
  [ -e "$confdir/aionbd.toml.dist" ] && chgrp aionbd "$confdir/aionbd.toml.dist"
  if [ -e "$confdir/aionbd.env" ] && [ -n "$(find "$confdir/aionbd.env" -perm /077)" ]; then
    echo "install.sh: warning: $confdir/aionbd.env is readable by others than root (chmod 600 it)" >&2
  fi
fi

# Documentation.
for f in README.md LICENSE config.toml; do
  [ -f "$root/$f" ] && install -m 0644 "$root/$f" "$docdir/$f"
done
[ -f "$root/deploy/README.md" ] && install -m 0644 "$root/deploy/README.md" "$docdir/deploy-README.md"

echo "aionbd installed${DESTDIR:+ into $DESTDIR}:"
echo "  $bindir/aionbd ($("$bindir/aionbd" --version 2>/dev/null || echo 'version unknown'))"
echo "  $unitdir/aionbd.service"
echo "  $config_note"
echo
echo "Next:"
echo "  edit /etc/aionbd/aionbd.toml (bind address, auth); secrets may go in /etc/aionbd/aionbd.env"
echo "    (cp /etc/aionbd/aionbd.env.example /etc/aionbd/aionbd.env && chmod 600 /etc/aionbd/aionbd.env)"
echo "  systemctl daemon-reload"
if [ "$upgrade" = yes ]; then
  echo "  systemctl restart aionbd          # upgrade: the running server still has the old binary"
else
  echo "  systemctl enable --now aionbd"
fi
echo "  systemctl status aionbd"
echo "  journalctl -u aionbd -f"
echo "  curl -fsS http://127.0.0.1:8080/ready"
echo "  systemctl reload aionbd           # after changing credentials or the TLS certificate"
