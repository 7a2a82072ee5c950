"""A flow with a step that sleeps (for cancel): it writes its pid first."""

import os
import time

from metaflow import FlowSpec, Parameter, step


class SleepyFlow(FlowSpec):
    """Sleeps in nap."""

    pidfile = Parameter("pidfile", default="", help="Where nap writes its pid.")

    @step
    def start(self):
        self.next(self.nap)

    @step
    def nap(self):
        with open(self.pidfile, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(120)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SleepyFlow()
