"""Researchers' own packages: pip installs into the user site (~/.local),
which Python reads after the image's packages, and ~/.local/bin is on PATH."""
import os
import site
import sys

home = os.path.expanduser("~")
if os.getuid() == 0:
    sys.exit("running as root: the cluster user was not set up")
if not site.ENABLE_USER_SITE:
    sys.exit("the user site is disabled in this Python")
user_site = site.getusersitepackages()
if user_site != os.path.join(home, ".local/lib/python%d.%d/site-packages" % sys.version_info[:2]):
    sys.exit(f"user site is {user_site}, not under {home}/.local")
if os.access(sys.prefix, os.W_OK):
    sys.exit(f"{sys.prefix} is writable by the user: pip would not use the user site")
path = os.environ.get("PATH", "").split(":")
if os.path.join(home, ".local/bin") not in path:
    sys.exit(f"{home}/.local/bin is not on PATH: {path}")
venv_bin = os.path.join(sys.prefix, "bin")
if path.index(venv_bin) > path.index(os.path.join(home, ".local/bin")):
    sys.exit("~/.local/bin comes before the image's tools on PATH")
print(f"user site {user_site}; ~/.local/bin on PATH after {venv_bin}")
