#!/usr/bin/perl
# Job for bench-reap.sh (perl-base only: runs in the bare Debian root).
# Creates BURSTS x SIZE orphans: each is a grandchild (double fork, its
# parent exits at once) that blocks on a pipe, so after a burst is created
# SIZE orphans sit under PID 1. Closing the pipe releases them all at once:
# they exit together and are orphaned zombies that only PID 1 can reap.
# After each release it polls /proc until no process but PID 1 and itself is
# left (drain time, CLOCK_MONOTONIC). Prints one line:
#   RESULT created=N orphaned=N reaped=N left=N drain_p50_us=.. drain_max_us=..
#          last_drain_us=.. max_zombies=.. total_ms=.. pid1_cpu_ms=..
# (pid1_cpu_ms: CPU time PID 1 ran meanwhile, from /proc/1/schedstat.)
# Usage: reap.pl BURSTS SIZE
use strict;
use warnings;
use POSIX ();

my ($bursts, $size) = @ARGV;
sub now_ns {    # clock_gettime(CLOCK_MONOTONIC), x86_64 syscall 228
    my $buf = "\0" x 16;
    syscall(228, 1, $buf) == 0 or die "clock_gettime: $!";
    my ($s, $n) = unpack("q q", $buf);
    return $s * 1_000_000_000 + $n;
}
# (others, zombies, children of PID 1): every process of the namespace but PID 1 and me.
sub scan {
    my ($others, $zombies, $under1) = (0, 0, 0);
    opendir(my $d, "/proc") or die "/proc: $!";
    for my $p (readdir $d) {
        next unless $p =~ /^\d+$/ && $p != 1 && $p != $$;
        open(my $f, "<", "/proc/$p/stat") or next;    # gone meanwhile
        my $stat = <$f>;
        close $f;
        next unless defined $stat && $stat =~ /\)\s+(\S)\s+(\d+)/;
        $others++;
        $zombies++ if $1 eq "Z";
        $under1++ if $2 == 1;
    }
    closedir $d;
    return ($others, $zombies, $under1);
}

# CPU time PID 1 has run so far (ns; /proc/PID/schedstat, field 1).
sub pid1_cpu_ns {
    open(my $f, "<", "/proc/1/schedstat") or return 0;
    my ($ns) = split ' ', scalar <$f>;
    return $ns;
}

my ($created, $orphaned, $max_zombies) = (0, 0, 0);
my $cpu0 = pid1_cpu_ns();
my @drain;
my $start = now_ns();
for my $b (1 .. $bursts) {
    pipe(my $r, my $w) or die "pipe: $!";
    for (1 .. $size) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $gc = fork;
            if (defined $gc && $gc == 0) {
                close $w;
                sysread($r, my $x, 1);    # until the burst is released
                POSIX::_exit(0);
            }
            POSIX::_exit(defined $gc ? 0 : 1);
        }
        waitpid($pid, 0);
        $created++ if $? == 0;
    }
    close $r;
    my (undef, undef, $under1) = scan();
    $orphaned += $under1;
    my $t0 = now_ns();    # before the release: waking them may preempt me
    close $w;             # release: all orphans of the burst exit now
    while (1) {
        my ($others, $zombies) = scan();
        $max_zombies = $zombies if $zombies > $max_zombies;
        last if $others == 0;
    }
    push @drain, (now_ns() - $t0) / 1000;
}
my $total_ms = (now_ns() - $start) / 1e6;
my ($left) = scan();
my $pid1_cpu_ms = (pid1_cpu_ns() - $cpu0) / 1e6;
my @s = sort { $a <=> $b } @drain;
printf "RESULT created=%d orphaned=%d reaped=%d left=%d drain_p50_us=%.0f drain_max_us=%.0f last_drain_us=%.0f max_zombies=%d total_ms=%.0f pid1_cpu_ms=%.2f\n",
    $created, $orphaned, $created - $left, $left, $s[int($#s / 2)], $s[-1], $drain[-1], $max_zombies, $total_ms, $pid1_cpu_ms;
