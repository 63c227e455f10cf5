#!/usr/bin/env bash
# Runs before `npm test` (npm's pretest). The tests use real tools: dig for
# queries, unbound and dnsmasq as upstreams, dnsperf for the bench, ip for
# the network-namespace test. On a
# fresh Debian machine as root this installs what is missing, saying so;
# otherwise it prints the command and the tests that need a tool fail with
# a message naming its package.
set -uo pipefail
declare -A pkg=([dig]=dnsutils [unbound]=unbound [dnsmasq]=dnsmasq [dnsperf]=dnsperf [ip]=iproute2)
missing=()
for tool in dig unbound dnsmasq dnsperf ip; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}")
done
# The interop tests' Debian packages (protoc, Python's and Go's gRPC): not all are commands.
if command -v dpkg-query >/dev/null 2>&1; then
  for p in protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf \
    golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "preflight: installing ${missing[*]} (Debian packages the tests use)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || {
    echo "preflight: apt-get failed; tests needing ${missing[*]} will fail" >&2
    exit 0
  }
else
  echo "preflight: missing ${missing[*]}: run  sudo apt-get install -y ${missing[*]}  (tests that need them will fail)" >&2
fi
exit 0
