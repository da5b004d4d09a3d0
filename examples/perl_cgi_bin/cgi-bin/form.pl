#!/usr/bin/perl
# A form handler in plain Perl (no CGI.pm, which left Perl's core in 5.22): it reads the fields
# of the query string (QUERY_STRING) and of a POSTed application/x-www-form-urlencoded body
# (CONTENT_LENGTH bytes of stdin), and answers with a plain-text page listing them.
use strict;
use warnings;

sub decode {
    my ($text) = @_;
    $text =~ tr/+/ /;
    $text =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    return $text;
}

sub fields {
    my ($encoded) = @_;
    return map { my ($name, $value) = split /=/, $_, 2; [decode($name), decode($value // '')] }
        grep { length } split /[&;]/, $encoded // '';
}

my $method = $ENV{REQUEST_METHOD} // 'GET';
my $body = '';
if ($method eq 'POST') {
    my $length = $ENV{CONTENT_LENGTH} || 0;
    binmode STDIN;
    while (length($body) < $length) {
        read(STDIN, $body, $length - length($body), length($body)) or last;
    }
}
my $type = $ENV{CONTENT_TYPE} // '';
my @form = $type =~ m{^application/x-www-form-urlencoded}i ? fields($body) : ();

binmode STDOUT;
print "Content-Type: text/plain; charset=utf-8\r\n\r\n";
print "method: $method\n";
print "script: $ENV{SCRIPT_NAME}\n";
print "path info: ", $ENV{PATH_INFO} // '', "\n";
print "query $_->[0]: $_->[1]\n" for fields($ENV{QUERY_STRING});
print "form $_->[0]: $_->[1]\n" for @form;
print "body bytes: ", length($body), "\n";
