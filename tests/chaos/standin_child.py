"""Stand-in for a node in process-handling unit tests only: sleeps until killed.

With `spawn-grandchild MARKER`, it spawns a sleeping grandchild through
chaos.procs.spawn (PDEATHSIG set), prints the grandchild's pid and sleeps.
"""
import sys
import time

if len(sys.argv) > 2 and sys.argv[1] == "spawn-grandchild":
    from chaos import procs
    p = procs.spawn([sys.executable, __file__, "sleep", sys.argv[2]])
    print(p.pid, flush=True)
while True:
    time.sleep(0.2)
