#!/usr/bin/env bash
# Runs the vmcmux daemon with a working default setup:
#   - installs missing Debian packages (tools/install-deps.sh),
#   - builds vmcmux-server into build-run/ (optimized, no sanitizers),
#   - serves SPICE on 127.0.0.1:5930 and the guest agent port on a UNIX socket,
#   - with a freshly generated password (printed), unless you pass your own
#     --password/--password-file or --disable-ticketing,
#   - and prints how to connect a client and a VM.
# Extra arguments go to vmcmux-server (see tools/run-server.sh --help).
# Environment: VMCMUX_LISTEN (default 127.0.0.1:5930), VMCMUX_GUEST (default
# unix:$XDG_RUNTIME_DIR/vmcmux/guest.sock, or /tmp/vmcmux-$UID/guest.sock),
# BUILDDIR (default build-run).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh build

builddir=${BUILDDIR:-build-run}
if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir" -Dbuildtype=release -Db_ndebug=if-release >/dev/null
fi
meson compile -C "$builddir" tools/vmcmux-server >/dev/null
server="$builddir/tools/vmcmux-server"

for a in "$@"; do
    case "$a" in
    -h | --help) exec "$server" --help ;;
    esac
done

if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -d "${XDG_RUNTIME_DIR}" ] && [ -w "${XDG_RUNTIME_DIR}" ]; then
    rundir="$XDG_RUNTIME_DIR/vmcmux"
else
    rundir="/tmp/vmcmux-$(id -u)"
fi
mkdir -p "$rundir"
chmod 700 "$rundir"

listen=${VMCMUX_LISTEN:-127.0.0.1:5930}
guest=${VMCMUX_GUEST:-unix:$rundir/guest.sock}

args=(--listen "$listen" --guest "$guest")
auth_given=no
user_listen=no
for a in "$@"; do
    case "$a" in
    --password | --password=* | -p | --password-file | --password-file=* | --disable-ticketing)
        auth_given=yes ;;
    --listen | --listen=* | -l) user_listen=yes ;;
    esac
done
if [ "$user_listen" = yes ]; then
    args=(--guest "$guest")
fi

password=
if [ "$auth_given" = no ]; then
    pwfile="$rundir/password"
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-16)
    (umask 077 && printf '%s\n' "$password" >"$pwfile")
    args+=(--password-file "$pwfile")
fi

host=${listen%:*}
port=${listen##*:}
guest_path=${guest#unix:}
cat <<EOF
vmcmux-server: SPICE on $listen, guest agent port $guest
EOF
if [ -n "$password" ]; then
    echo "  password: $password   (also in $pwfile)"
fi
case "$listen" in
unix:*) echo "  connect:  remote-viewer spice+unix://${listen#unix:}" ;;
*) echo "  connect:  remote-viewer spice://$host:$port" ;;
esac
case "$guest" in
unix:*)
    cat <<EOF
  QEMU:     -chardev socket,id=vdagent,path=$guest_path
            -device virtio-serial -device virtserialport,chardev=vdagent,name=com.redhat.spice.0
  libvirt:  <channel type='unix'>
              <source mode='connect' path='$guest_path'/>
              <target type='virtio' name='com.redhat.spice.0'/>
            </channel>
  no VM:    spice-vdagentd -x -X -s $guest_path ...   (see docs/server.md)
EOF
    ;;
esac
echo "  stop:     Ctrl-C"
exec "$server" "${args[@]}" "$@"
