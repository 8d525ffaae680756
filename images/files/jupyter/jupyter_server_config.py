# Jupyter follows labinit's idle watchdog. lab-pytorch installs this file as
# /etc/jupyter/jupyter_server_config.py (from labkit's images/files/jupyter/).
#
# While the watchdog is on (LABKIT_IDLE_TIMEOUT; `labinit wait`: 30 minutes by
# default), labinit puts its timeout in whole seconds into the job's
# environment as LABINIT_IDLE_TIMEOUT. Then Jupyter itself
#   - shuts down a kernel idle that long, even with a browser tab connected,
#     never one that runs a cell: its memory and GPU memory are freed;
#   - stops the server after that long with no kernel and no activity.
# Without the variable, nothing here changes Jupyter's defaults. Your own
# configuration (~/.jupyter, JUPYTER_CONFIG_DIR) and command-line options such
# as --MappingKernelManager.cull_idle_timeout=0 take precedence over this file.
import os

c = get_config()  # noqa: F821 -- defined by Jupyter when it loads this file


def labinit_idle_timeout():
    """LABINIT_IDLE_TIMEOUT as a positive number of seconds, or None."""
    text = os.environ.get("LABINIT_IDLE_TIMEOUT", "").strip()
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        return None
    return int(text)


timeout = labinit_idle_timeout()
if timeout:
    c.MappingKernelManager.cull_idle_timeout = timeout
    # Check a few times per timeout, at least every minute.
    c.MappingKernelManager.cull_interval = max(1, min(60, timeout // 4))
    c.MappingKernelManager.cull_connected = True
    c.MappingKernelManager.cull_busy = False
    c.ServerApp.shutdown_no_activity_timeout = timeout
