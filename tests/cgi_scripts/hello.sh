#!/bin/sh
# A plain shell CGI script: a document with CRLF header lines, echoing a few meta-variables.
printf 'Content-Type: text/plain\r\n'
printf 'X-Script: hello.sh\r\n'
printf '\r\n'
printf 'hello from sh\n'
printf 'REQUEST_METHOD=%s\n' "$REQUEST_METHOD"
printf 'SCRIPT_NAME=%s\n' "$SCRIPT_NAME"
printf 'PATH_INFO=%s\n' "$PATH_INFO"
printf 'QUERY_STRING=%s\n' "$QUERY_STRING"
printf 'CONTENT_LENGTH=%s\n' "$CONTENT_LENGTH"
