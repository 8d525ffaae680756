# The cluster user has passwordless sudo.
set -eu
out=$(sudo -n id -u) || { echo "sudo -n id -u failed"; exit 1; }
[ "$out" = 0 ] || { echo "sudo -n id -u printed '$out'"; exit 1; }
echo "sudo -n works"
