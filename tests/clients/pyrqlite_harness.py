"""pytest plugin used by run_pyrqlite_suite.sh (loaded with `-p pyrqlite_harness`).

pyrqlite's EphemeralRqlited waits for GET /readyz to answer 200 in an endless loop, also
when the server it started has already exited (for example because it refused its command
line), which would hang the suite. This plugin keeps the suite and pyrqlite unchanged and only
turns that case into an error: once the server process has exited, the wait raises
RuntimeError with the exit status and the end of the server's log (RQLITED_SHIM_LOG).
It changes nothing while the server runs. At the end of the session it also stops any server
the suite left running (one that never became ready, or whose test class never got to close
its connection) and removes the temporary data directories pyrqlite left behind.
"""
import os
import shutil
import subprocess
import tempfile

import pyrqlite._ephemeral as _ephemeral

_started = []


class _SubprocessRecordingPopen(object):
    """Stands in for the subprocess module inside pyrqlite._ephemeral; records each server."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args, **kwargs):
        proc = subprocess.Popen(*args, **kwargs)
        _started.append(proc)
        return proc


def _log_tail(lines=8):
    path = os.environ.get("RQLITED_SHIM_LOG")
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        text = f.read()
    last = text.rsplit("== rqlited ", 1)[-1]
    return "\nserver output (%s):\n== rqlited %s" % (
        path, "\n".join(last.strip().splitlines()[-lines:]))


_original_test_readyz = _ephemeral.EphemeralRqlited._test_readyz


def _test_readyz(host, port):
    if _original_test_readyz(host, port):
        return True
    proc = _started[-1] if _started else None
    if proc is not None and proc.poll() is not None:
        data_dir = proc.args[-1]
        shutil.rmtree(data_dir, ignore_errors=True)
        raise RuntimeError("%s exited with status %s before GET /readyz answered 200%s" % (
            " ".join(proc.args), proc.returncode, _log_tail()))
    return False


_ephemeral.subprocess = _SubprocessRecordingPopen()
_ephemeral.EphemeralRqlited._test_readyz = staticmethod(_test_readyz)


def pytest_unconfigure(config):
    tmp = os.path.realpath(tempfile.gettempdir())
    for proc in _started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        data_dir = os.path.realpath(proc.args[-1])
        if os.path.dirname(data_dir) == tmp and os.path.basename(data_dir).startswith("tmp"):
            shutil.rmtree(data_dir, ignore_errors=True)
