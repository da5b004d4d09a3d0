#!/bin/sh
# Malformed CGI responses, chosen by QUERY_STRING.
case "$QUERY_STRING" in
    cr) printf 'Content-Type: text/plain\r\nX-Injected: a\rSet-Cookie: evil=1\r\n\r\nbody\n' ;;
    nocolon) printf 'Content-Type: text/plain\r\nThis line has no colon\r\n\r\nbody\n' ;;
    obsfold) printf 'Content-Type: text/plain\r\nX-Folded: first\r\n second\r\n\r\nbody\n' ;;
    nul) printf 'Content-Type: text/plain\r\nX-Nul: a\000b\r\n\r\nbody\n' ;;
    spacename) printf 'Content-Type: text/plain\r\nBad Name: x\r\n\r\nbody\n' ;;
    status) printf 'Status: abc\r\nContent-Type: text/plain\r\n\r\nbody\n' ;;
    twostatus) printf 'Status: 200\r\nStatus: 404\r\nContent-Type: text/plain\r\n\r\nbody\n' ;;
    nofields) printf '\r\nbody\n' ;;
    localbody) printf 'Location: /hello.sh\r\n\r\nbody\n' ;;
    *) printf 'Content-Type: text/plain\r\n\r\nfine\n' ;;
esac
