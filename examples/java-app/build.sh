#!/usr/bin/env bash
# Builds hello.jar from src/main/java/ with a JDK (Debian: openjdk-17-jdk-headless). The JAR is
# kept in the repository, so that pushing the example needs no JDK:
#   paas push hello-java -p examples/java-app/hello.jar
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
javac --release 17 -d "$out" src/main/java/Hello.java
jar --create --file hello.jar --main-class Hello --date 2026-01-01T00:00:00Z -C "$out" .
