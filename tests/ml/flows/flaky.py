"""A flow whose train step fails while a marker file exists (for failure and resume)."""

import os

from metaflow import FlowSpec, Parameter, step


class FlakyFlow(FlowSpec):
    """Fails in train while the marker exists."""

    marker = Parameter("marker", default="", help="Fail in train while this file exists.")

    @step
    def start(self):
        self.value = 41
        self.next(self.train)

    @step
    def train(self):
        if self.marker and os.path.exists(self.marker):
            raise RuntimeError("planted failure in train")
        self.value += 1
        self.next(self.end)

    @step
    def end(self):
        print("value", self.value)


if __name__ == "__main__":
    FlakyFlow()
