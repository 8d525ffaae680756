#!/usr/bin/perl
# Job for bench-signal.sh (perl-base only: runs in the bare Debian root).
# Installs a TERM handler, blocks TERM, prints "READY", then waits in
# sigsuspend (TERM unblocked atomically: a TERM sent right after READY can
# not slip in before the wait and be missed). The handler's first act is
# reading CLOCK_MONOTONIC; it prints "TERM <ns>" and exits 0.
use strict;
use warnings;
use POSIX qw(sigprocmask sigsuspend SIGTERM SIG_BLOCK);
$| = 1;
sub now_ns {    # clock_gettime(CLOCK_MONOTONIC), x86_64 syscall 228
    my $buf = "\0" x 16;
    syscall(228, 1, $buf) == 0 or die "clock_gettime: $!";
    my ($s, $n) = unpack("q q", $buf);
    return $s * 1_000_000_000 + $n;
}
$SIG{TERM} = sub { my $t = now_ns(); print "TERM $t\n"; POSIX::_exit(0); };
sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGTERM)) or die "sigprocmask: $!";
print "READY\n";
sigsuspend(POSIX::SigSet->new()) while 1;
