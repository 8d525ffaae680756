# The ssh service and sshd are there (the service starts sshd when
# SSH_PUBLIC_KEY is set; e2e logs in for real), and no host key is baked in.
set -eu
[ -x /opt/lab/services/ssh ] || { echo "/opt/lab/services/ssh is missing or not executable"; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "/usr/sbin/sshd is missing"; exit 1; }
if ls /etc/ssh/ssh_host_*key* >/dev/null 2>&1; then echo "host keys are baked into the image"; exit 1; fi
echo "ssh service and sshd present, no host keys in the image"
