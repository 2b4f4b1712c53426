#!/usr/bin/env bash
# Installs what paas and its tests need on a Debian or Ubuntu host, if missing:
# iproute2 and nftables (instance networks), e2fsprogs (disk quotas), curl, python3 with pip and nodejs with npm (the host
# stack's languages, used by the shipped buildpacks), a C and C++ compiler (the fuzz
# target's libFuzzer), protoc with the well-known protobuf files (the etcd client is
# generated at build time), etcd-server (the state store's tests), mmdebstrap (stacks),
# chromium with its WebDriver (the web console's tests), and a Rust toolchain check.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (for example with sudo): paas makes namespaces, cgroups and network links" >&2
  exit 1
fi

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/python3 ] || missing+=(python3)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
[ -x /usr/bin/node ] || missing+=(nodejs)
[ -x /usr/bin/npm ] || missing+=(npm)
command -v cc >/dev/null || missing+=(gcc)
# libFuzzer (C++), for the router's fuzz target in the test command.
command -v c++ >/dev/null || missing+=(g++)
# The etcd client is generated from etcd's protobuf files at build time.
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
# A real etcd, for the state store's conformance suite (and clusters).
command -v etcd >/dev/null || missing+=(etcd-server)
# Stacks: `paasd stack build` makes a Debian root filesystem with mmdebstrap.
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# The web console's tests drive a real headless Chromium through WebDriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo is missing: install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi
