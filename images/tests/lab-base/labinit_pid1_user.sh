# labinit is PID 1 and runs the test as the cluster user, in its home.
set -eu
comm=$(cat /proc/1/comm)
[ "$comm" = labinit ] || { echo "PID 1 is '$comm', not labinit"; exit 1; }
[ "$(id -u)" = "$CLUSTER_USER_ID" ] || { echo "uid $(id -u), expected $CLUSTER_USER_ID"; exit 1; }
[ "$(id -g)" = "$CLUSTER_GROUP_ID" ] || { echo "gid $(id -g), expected $CLUSTER_GROUP_ID"; exit 1; }
[ "$(id -un)" = "$CLUSTER_USER" ] || { echo "user $(id -un), expected $CLUSTER_USER"; exit 1; }
[ "$HOME" = "/home/$CLUSTER_USER" ] && [ -d "$HOME" ] && [ -O "$HOME" ] || { echo "HOME=$HOME is not the user's own home"; exit 1; }
echo "PID 1 labinit; running as $(id -un) ($(id -u):$(id -g)) in $HOME"
