#!/bin/sh
# Researchers' own Python packages: `pip install X` as the cluster user lands
# in the user site (~/.local, see docs/images.md); put the scripts it installs
# (~/.local/bin) on the job's PATH, after the image's own tools.
# Runs as root at every start; LABKIT_HOME is the user's home.
set -eu
[ -n "${LABKIT_HOME:-}" ] || exit 0
case ":$PATH:" in
*":$LABKIT_HOME/.local/bin:"*) ;;
*) echo "PATH=$PATH:$LABKIT_HOME/.local/bin" >>"$LABKIT_ENV" ;;
esac
