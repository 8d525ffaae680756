"""Drive an interactive bash through a pseudo-terminal (tests/terminal.rs).

usage: pty_driver.py DIR SIGPRINT -- ARGV...

Runs ARGV on a new pty (the pty is the controlling terminal of ARGV's
session), then: reads $- , runs the printer in the foreground and presses
Ctrl-C, runs `sleep 30` and presses Ctrl-Z, and exits with 5. Prints one
RESULT line and the whole transcript.
"""
import os, pty, re, select, sys, time

d, sigprint = sys.argv[1], sys.argv[2]
argv = sys.argv[sys.argv.index("--") + 1:]
os.environ["PS1"] = "PROMPT> "
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""

PATIENCE = float(os.environ.get("PTY_PATIENCE", "15"))

def read_until(pred, t=None):
    global out
    t = PATIENCE if t is None else t
    end = time.time() + t
    while time.time() < end:
        if pred():
            return True
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return pred()
            if not data:
                return pred()
            out += data
    return pred()

def prompts():
    return out.count(b"PROMPT> ")

res = {}
read_until(lambda: prompts() >= 1)
os.write(fd, b'echo "F=$-"\n')
read_until(lambda: re.search(rb"F=([A-Za-z]+)", out) is not None)
m = re.search(rb"F=([A-Za-z]+)", out)
res["flags"] = m.group(1).decode() if m else ""
read_until(lambda: out.rstrip(b" ").endswith(b"PROMPT>"))
n = prompts()
os.write(fd, ("%s a %s\n" % (sigprint, d)).encode())
ready = os.path.join(d, "a.ready")
read_until(lambda: os.path.exists(ready))
os.write(fd, b"\x03")
log = os.path.join(d, "a.log")
res["ctrl_c"] = int(read_until(lambda: os.path.exists(log) and "SIGINT" in open(log).read()))
read_until(lambda: prompts() > n and out.rstrip(b" ").endswith(b"PROMPT>"))
n = prompts()
os.write(fd, b"sleep 30\n")
time.sleep(0.3)  # let bash start sleep in the foreground
os.write(fd, b"\x1a")
res["stopped"] = int(read_until(lambda: b"Stopped" in out))
n = prompts()
os.write(fd, b"kill -9 %1\n")
read_until(lambda: prompts() > n)
n = prompts()
os.write(fd, b"jobs\n")
read_until(lambda: prompts() > n)
os.write(fd, b"exit 5\n")
code = -1
end = time.time() + PATIENCE
while time.time() < end:
    wpid, st = os.waitpid(pid, os.WNOHANG)
    if wpid == pid:
        code = os.waitstatus_to_exitcode(st)
        break
    read_until(lambda: False, 0.05)
if code == -1:
    os.kill(pid, 9)  # unshare --kill-child takes the namespace down with it
    os.waitpid(pid, 0)
res["code"] = code
res["no_tty_warning"] = int(b"cannot set terminal process group" not in out and b"no job control" not in out)
print("RESULT " + " ".join("%s=%s" % kv for kv in sorted(res.items())))
print(out.decode(errors="replace"))
