#!/bin/sh
# Starts PHP-FPM, then nginx in front of it on $PORT. Neither can reopen the instance's
# stdout or stderr (pipes its shim holds): their logs go through FIFOs that cat copies.
set -e
deps=/home/vcap/deps/php
sed -e "s/@PORT@/${PORT:-8080}/g" -e "s/@INDEX@/${CF_INSTANCE_INDEX:-0}/g" \
  "$deps/nginx.conf" > /tmp/nginx.conf
rm -f /tmp/nginx-access /tmp/php-fpm-log
mkfifo /tmp/nginx-access /tmp/php-fpm-log
cat /tmp/nginx-access &
cat /tmp/php-fpm-log >&2 &
"$(cat "$deps/fpm")" -F -y "$deps/php-fpm.conf" &
# nginx listens (and so passes the port health check) only once PHP-FPM can answer.
for _ in $(seq 100); do
  [ -S /tmp/php-fpm.sock ] && break
  sleep 0.05
done
echo "nginx and PHP-FPM serving on port ${PORT:-8080}"
exec /usr/sbin/nginx -e stderr -p /tmp -c /tmp/nginx.conf
