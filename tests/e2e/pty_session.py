#!/usr/bin/env python3
"""Play a person at `docker run -it IMAGE bash`: run the command given after
`--` under a pseudo-terminal and check that bash has job control.

Prints the whole transcript; on failure the last line is `FAIL: reason` and the
exit code is 1. Used by tests/e2e/run.sh (scenario interactive-bash-job-control).
"""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time


class Failed(Exception):
    pass


class Session:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.buf = b""
        self.transcript = b""

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            return False
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        self.buf += data
        self.transcript += data
        return True

    def expect(self, pattern, timeout, what):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"{what}: not seen within {timeout} s")
            if not self._read(left):
                raise Failed(f"{what}: the session ended first")

    def send(self, data):
        os.write(self.fd, data if isinstance(data, bytes) else data.encode())

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self._read(0.2)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise Failed(f"the session did not end within {timeout} s of `exit`")


PROMPT = rb"@e2e\$ $"


def scenario(s):
    # The first prompt of the image's ~/.bashrc (ends in `$ `), after labinit's setup.
    s.expect(rb"\$ $", 90, "bash's first prompt")
    # A prompt the typed text cannot match.
    s.send("PS1='\\u@e2e\\$ '\n")
    s.expect(PROMPT, 10, "the e2e prompt")
    s.send("id -un; tty\n")
    m = s.expect(rb"(\w+)\r\n/dev/pts/\d+\r\n", 10, "id -un; tty")
    user = os.environ.get("E2E_USER", "alice")
    if m.group(1).decode() != user:
        raise Failed(f"the shell runs as {m.group(1).decode()!r}, not {user}")
    s.expect(PROMPT, 10, "prompt after id")
    s.send("sleep 100 &\n")
    s.expect(rb"\[1\] \d+", 10, "bash's job number for `sleep 100 &`")
    s.expect(PROMPT, 10, "prompt after sleep &")
    s.send("jobs\n")
    s.expect(rb"\[1\]\+\s+Running\s+sleep 100 &", 10, "`jobs` listing the background sleep")
    s.expect(PROMPT, 10, "prompt after jobs")
    # Ctrl-C reaches the foreground job only; the shell survives.
    s.send("sleep 50\n")
    time.sleep(1.0)
    s.send(b"\x03")
    s.expect(PROMPT, 10, "prompt after Ctrl-C of a foreground sleep")
    s.send("echo rc=$?\n")
    s.expect(rb"rc=130", 10, "the interrupted sleep's status 130")
    s.expect(PROMPT, 10, "prompt after echo")
    # Ctrl-Z stops the foreground job, fg brings it back.
    s.send("sleep 30\n")
    time.sleep(1.0)
    s.send(b"\x1a")
    s.expect(rb"\[2\]\+\s+Stopped\s+sleep 30", 10, "Ctrl-Z stopping `sleep 30`")
    s.expect(PROMPT, 10, "prompt after Ctrl-Z")
    s.send("kill %1 %2; fg 2>/dev/null; jobs; echo jobs-done\n")
    s.expect(rb"jobs-done\r\n", 10, "killing both jobs")
    s.expect(PROMPT, 10, "prompt after kill")
    s.send("exit 7\n")
    return s.wait_exit(30)


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    if not argv:
        print("usage: pty_session.py -- COMMAND…", file=sys.stderr)
        return 2
    s = Session(argv)
    try:
        code = scenario(s)
    except Failed as e:
        try:
            os.kill(s.pid, signal.SIGKILL)
            os.waitpid(s.pid, 0)
        except OSError:
            pass
        print(f"\nFAIL: {e}")
        return 1
    text = s.transcript.decode(errors="replace")
    for bad in ("no job control", "cannot set terminal process group", "Inappropriate ioctl"):
        if bad in text:
            print(f"\nFAIL: bash said '{bad}'")
            return 1
    if code != 7:
        print(f"\nFAIL: `exit 7` in the shell gave the container exit code {code}")
        return 1
    print("\nOK: job control works (jobs, Ctrl-C, Ctrl-Z), exit code 7 passed through")
    return 0


if __name__ == "__main__":
    sys.exit(main())
