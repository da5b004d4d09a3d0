#!/bin/sh
# Writes QUERY_STRING bytes ("eee...") to stderr without a newline, then answers.
head -c "${QUERY_STRING:-0}" /dev/zero | tr '\0' 'e' >&2
printf 'Content-Type: text/plain\n\nok\n'
