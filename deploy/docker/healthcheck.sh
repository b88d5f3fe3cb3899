#!/bin/bash
# Container health check: GET /ready on the server's own port, healthy on 200.
# Uses bash's /dev/tcp, so the image needs no curl or wget. With TLS on, or
# with authentication on and AIONBD_AUTH_OPEN_HEALTH unset, /ready does not
# answer 200 to this plain request: use an orchestrator probe instead.
port=${AIONBD_HEALTH_PORT:-${AIONBD_BIND##*:}}
port=${port:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 2 _ code _ <&3 || exit 1
[ "$code" = 200 ]
