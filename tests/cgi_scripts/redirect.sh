#!/bin/sh
# Redirects (RFC 3875 section 6.2), chosen by QUERY_STRING.
case "$QUERY_STRING" in
    local) printf 'Location: /hello.sh/moved?via=local\n\n' ;;
    encoded) printf 'Location: /hello.sh/a%%20b?x=%%20\n\n' ;;
    mounted) printf 'Location: /cgi-bin/hello.sh/p\n\n' ;;
    loop) printf 'Location: /redirect.sh?loop\n\n' ;;
    escape) printf 'Location: /../outside.sh\n\n' ;;
    client) printf 'Location: http://example.com/elsewhere\n\n' ;;
    document) printf 'Status: 301 Moved Permanently\nLocation: http://example.com/moved\nContent-Type: text/html\n\n<a href="http://example.com/moved">moved</a>\n' ;;
esac
