"""The peak memory of a test's subprocess, as an expression the subprocess evaluates itself.

Not resource.getrusage: on Linux its ru_maxrss survives exec, so a child started from a large
pytest process reports the parent's high-water mark (a 300 MB parent: 310 MB for an idle child).
VmHWM belongs to the process's address space, which exec replaces.
"""

PEAK_MB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024"
