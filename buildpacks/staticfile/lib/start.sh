#!/bin/sh
# Starts the static file server the buildpack readied: nginx on $PORT, or the Python one.
set -e
deps=/home/vcap/deps/staticfile
if [ -f "$deps/nginx.conf" ]; then
  sed -e "s/@PORT@/${PORT:-8080}/g" -e "s/@INDEX@/${CF_INSTANCE_INDEX:-0}/g" \
    "$deps/nginx.conf" > /tmp/nginx.conf
  # nginx cannot reopen the instance's stdout (a pipe its shim holds): its access
  # lines go through a FIFO that cat copies there.
  rm -f /tmp/nginx-access
  mkfifo /tmp/nginx-access
  cat /tmp/nginx-access &
  echo "nginx serving /home/vcap/app/$(cat "$deps/root") on port ${PORT:-8080}"
  exec /usr/sbin/nginx -e stderr -p /tmp -c /tmp/nginx.conf
fi
exec python3 "$deps/server.py"
