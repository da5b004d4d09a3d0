#!/bin/sh
# Never answers. Writes its pid (its process group) and its child's pid to the file QUERY_STRING
# names (tests only), then waits for the child; with PATH_INFO "/detach" it exits at once instead,
# leaving the child holding stdout open. With PATH_INFO "/head" it sends a response head first.
if [ "$PATH_INFO" = "/head" ]; then printf 'Content-Type: text/plain\n\nstarted\n'; fi
sleep 300 &
printf '%s %s\n' "$$" "$!" > "$QUERY_STRING.tmp"
mv "$QUERY_STRING.tmp" "$QUERY_STRING"
if [ "$PATH_INFO" = "/detach" ]; then exit 0; fi
wait
