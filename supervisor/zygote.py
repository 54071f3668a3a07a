"""``python -m supervisor.zygote``: the zygote's old module path, kept because a daemon
started before an upgrade execs it for the canary of its next reload."""

import sys

from supervisor.instance.zygote import _main

if __name__ == "__main__":
    sys.exit(_main(sys.argv))
