#!/bin/bash
# The running server answers with the built page (bash's /dev/tcp: curl is not in the base image).
set -eu
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
response=$(cat <&3)
grep -q '^HTTP/1.0 200' <<<"$response"
grep -o '<h1>.*</h1>' <<<"$response"
