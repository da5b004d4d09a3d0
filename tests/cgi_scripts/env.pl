#!/usr/bin/perl
# Core Perl only: read the body as CONTENT_LENGTH says, then list every environment variable.
use strict;
use warnings;

binmode STDIN;
binmode STDOUT;
my $length = $ENV{CONTENT_LENGTH} || 0;
my $body = '';
while (length($body) < $length) {
    my $got = read(STDIN, $body, $length - length($body), length($body));
    last unless $got;
}
print "Content-Type: text/plain\r\n";
print "X-Body-Length: " . length($body) . "\r\n";
print "\r\n";
print "$_=$ENV{$_}\n" for sort keys %ENV;
print "--body--\n";
print $body;
