"""A Jupyter client for tests/jupyter.rs, run with the test venv's python.

    jupyter_driver.py RUNTIME_DIR start          start a python3 kernel over the
                                                 REST API; print its id
    jupyter_driver.py RUNTIME_DIR run ID CODE    execute CODE in kernel ID and
                                                 wait for the reply (exit 1 if
                                                 the cell failed)
    jupyter_driver.py RUNTIME_DIR send ID CODE   send CODE and return at once
                                                 (the cell keeps running)
    jupyter_driver.py RUNTIME_DIR kernels        print GET /api/kernels

The server is the one whose jpserver-PID.json is in RUNTIME_DIR (the only
one); kernels are reached through their connection files there, like a
notebook front end that talks to the kernel directly.
"""
import glob
import json
import os
import sys
import time
import urllib.request

from jupyter_client import BlockingKernelClient


def server(runtime):
    files = glob.glob(os.path.join(runtime, "jpserver-*.json"))
    if len(files) != 1:
        sys.exit(f"jupyter_driver.py: expected one jpserver-*.json in {runtime}, found {files}")
    with open(files[0]) as f:
        return json.load(f)


def api(info, method, path, body=None):
    url = f"http://127.0.0.1:{info['port']}{info['base_url']}api/{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"token {info['token']}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def client(runtime, kernel_id, ready):
    kc = BlockingKernelClient(connection_file=os.path.join(runtime, f"kernel-{kernel_id}.json"))
    kc.load_connection_file()
    kc.start_channels()
    if ready:
        # kernel_info round trip; `send` skips it so that the cell is the
        # kernel's only activity (the request waits in the socket queue).
        kc.wait_for_ready(timeout=60)
    return kc


def main():
    runtime, what = sys.argv[1], sys.argv[2]
    info = server(runtime)
    if what == "start":
        k = api(info, "POST", "kernels", {"name": "python3"})
        print(k["id"])
    elif what == "kernels":
        print(json.dumps(api(info, "GET", "kernels?no_track_activity=1")))
    elif what in ("run", "send"):
        kc = client(runtime, sys.argv[3], what == "run")
        msg_id = kc.execute(sys.argv[4])
        if what == "run":
            deadline = time.monotonic() + 120
            while True:
                reply = kc.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            if reply["content"]["status"] != "ok":
                sys.exit(f"jupyter_driver.py: the cell failed: {reply['content']}")
        else:
            # Let the request leave before the sockets close.
            time.sleep(1)
        kc.stop_channels()
    else:
        sys.exit(f"jupyter_driver.py: unknown command {what}")


if __name__ == "__main__":
    main()
