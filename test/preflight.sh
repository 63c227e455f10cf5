#!/usr/bin/env bash
# What the tests need from the machine, in one place. `npm test` runs this
# first (npm's pretest); `.ci/run` runs it with --strict.
#
#   Debian packages: dig, unbound, dnsmasq (upstreams), dnsperf (bench),
#     ip (network namespaces), systemd-analyze (deploy), protoc with
#     Python's and Go's gRPC (interop, xDS), etcd and openssl (cluster mode),
#     gcc, libc6-dev, libssl-dev (to build genreport), chromium (the fleet
#     page's browser tests, driven by playwright-core: nothing downloads a browser),
#     newuidmap (uidmap: other users in the tests' user namespace, test/sandbox.mjs),
#     curl, prlimit (util-linux) and Python's dnspython (the hostile suite, issue 21),
#     prometheus (its http_sd_configs read /sd/prometheus, issue 22),
#     script (bsdutils: a terminal for the tests of what a TTY sees),
#     nsenter, unshare, setpriv (util-linux), sysctl (procps), mount (mount),
#     python3, nm and readelf (binutils: bench/node-pages.ts names node's
#     resident pages, issue 24).
#   For a user who is not root: unprivileged user namespaces, subordinate
#     ids in /etc/subuid and /etc/subgid, and a cgroup v2 subtree delegated
#     to them (for the pods' test; root needs none of it).
#   genreport: ISC's DNS compliance tool, built from its source outside the
#     repository (GENREPORT_SRC, default ../shared/tools/genreport) into
#     ${TMPDIR:-/tmp}/canonport-genreport, where test/helpers/genreport.ts
#     looks for it (CANONPORT_GENREPORT overrides).
#
# As root on Debian it installs whatever is missing, saying so. Otherwise it
# prints the command to run; the tests that need a missing tool then fail
# with a message naming its package. With --strict (CI) anything it cannot
# provide is an error (exit 1) instead of a warning.
set -uo pipefail
cd "$(dirname "$0")/.."
strict=0
[ "${1:-}" = --strict ] && strict=1

fail() {
  echo "preflight: $*" >&2
  [ $strict = 1 ] && exit 1
}

missing=()
# Commands, and the package that brings each.
declare -A by_command=(
  [dig]=dnsutils [unbound]=unbound [dnsmasq]=dnsmasq [dnsperf]=dnsperf [ip]=iproute2
  [systemd-analyze]=systemd [etcd]=etcd-server [etcdctl]=etcd-client [openssl]=openssl [gcc]=gcc
  [chromium]=chromium [curl]=curl [unshare]=util-linux [setpriv]=util-linux [newuidmap]=uidmap [newgidmap]=uidmap [prlimit]=util-linux
  [prometheus]=prometheus [script]=bsdutils [nsenter]=util-linux [sysctl]=procps [mount]=mount [umount]=mount
  [python3]=python3 [nm]=binutils [readelf]=binutils
)
for cmd in "${!by_command[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${by_command[$cmd]}")
done
# Headers genreport compiles against.
[ -f /usr/include/resolv.h ] || missing+=(libc6-dev)
[ -f /usr/include/openssl/hmac.h ] || missing+=(libssl-dev)
# Packages that are not commands: protoc's gRPC plugins, Python's gRPC (for
# /usr/bin/python3: the xDS tests use its stock xDS resolver too) and Go's.
if command -v dpkg-query >/dev/null 2>&1; then
  for p in protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf python3-dnspython \
    golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev \
    protoc-gen-go protoc-gen-go-grpc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "preflight: installing ${missing[*]} (Debian packages the tests use)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
      # Installing unbound, dnsmasq or etcd may start a system service on
      # their usual ports; the tests start their own, on other ports.
      for svc in unbound dnsmasq etcd; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
        pkill -x "$svc" 2>/dev/null || true
      done
    else
      fail "apt-get failed; tests needing ${missing[*]} will fail"
    fi
  else
    fail "missing ${missing[*]}: run  sudo apt-get install -y ${missing[*]}  (tests that need them will fail)"
  fi
fi

# npm test runs in namespaces of its own (test/sandbox.mjs); a user who is
# not root needs a user namespace for that, with ids beyond their own for
# the tests that run the daemon as another user (setpriv --reuid=65534).
if [ "$(id -u)" != 0 ]; then
  me=$(id -un)
  if ! unshare --user --map-root-user true 2>/dev/null; then
    fail "unprivileged user namespaces are not allowed here, and the tests run in one (on Ubuntu: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0)"
  fi
  if ! grep -qE "^($me|$(id -u)):" /etc/subuid 2>/dev/null || ! grep -qE "^($me|$(id -g)):" /etc/subgid 2>/dev/null; then
    fail "$me has no subordinate ids, so the tests that run the daemon as another user will fail: run  sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $me"
  fi
  # The pods' containers need real cgroups (test/sandbox.mjs, runCgroup): the cgroup this shell is in must be
  # this user's to write, or systemd's user manager must make one (a scope with Delegate=yes).
  v2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") { print $5; exit } break } }' /proc/self/mountinfo)
  own=$(sed -n 's/^0:://p' /proc/self/cgroup)
  if [ -z "$v2" ]; then
    fail "no cgroup v2 hierarchy is mounted, so test/cluster-containers.test.ts (two pods of one service) will fail"
  elif ! [ -w "$v2$own" ] && ! XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/run/user/$(id -u)} systemd-run --user --scope --quiet -p Delegate=yes true >/dev/null 2>&1; then
    fail "no cgroup v2 subtree is delegated to $me (its cgroup $v2$own is root's, and systemd-run --user fails), so test/cluster-containers.test.ts (two pods of one service) will fail: see \"What a contributor needs\" in docs/tests.md"
  fi
fi

genreport_src=${GENREPORT_SRC:-../shared/tools/genreport}
genreport_out=${TMPDIR:-/tmp}/canonport-genreport
if [ -n "${CANONPORT_GENREPORT:-}" ]; then
  [ -x "$CANONPORT_GENREPORT" ] || fail "CANONPORT_GENREPORT=$CANONPORT_GENREPORT is not an executable file"
elif [ -f "$genreport_src/build.sh" ]; then
  # build.sh rebuilds only when the source is newer than the binary.
  built=$(bash "$genreport_src/build.sh" "$genreport_out" 2>&1 | tail -n 1)
  [ -x "$built" ] || fail "building genreport from $genreport_src failed: $built (test/genreport.test.ts will fail)"
elif [ ! -x "$genreport_out/genreport" ]; then
  fail "genreport source not found at $genreport_src (set GENREPORT_SRC, or CANONPORT_GENREPORT to a built binary): test/genreport.test.ts will fail"
fi
exit 0
