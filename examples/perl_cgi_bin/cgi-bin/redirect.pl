#!/usr/bin/perl
# Redirects. By default a local redirect (RFC 3875 section 6.2.2): a Location that is a path,
# with no Status. The server fetches that path itself, as a GET, and sends its response: the
# client never sees a redirect. With ?external=1, a client redirect: an absolute URL, which the
# server passes on to the client as a 302.
use strict;
use warnings;

my $query = $ENV{QUERY_STRING} // '';
if ($query =~ /(?:^|&)external=1(?:&|$)/) {
    print "Location: https://example.org/\r\n\r\n";
} else {
    print "Location: /form.pl/after-redirect?from=redirect.pl\r\n\r\n";
}
