#!/bin/sh
# A non-parsed-header script (RFC 3875 section 5): it writes the HTTP status line itself.
printf 'HTTP/1.1 299 Custom Reason\r\nContent-Type: text/plain\r\nX-NPH: yes\r\n\r\nnph body\n'
