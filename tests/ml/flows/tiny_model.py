"""A flow that leaves a small model and an evaluation that beats its baseline (for
promotion tests that should not spend time training)."""

from metaflow import FlowSpec, step


class TinyModelFlow(FlowSpec):
    """Fits a mean; its evaluation beats the baseline."""

    @step
    def start(self):
        self.model = {"mean": 3.0}
        self.input_schema = {"x": "float"}
        self.evaluation = {
            "metric": "rmse",
            "model": 1.0,
            "baseline": 2.0,
            "higher_is_better": False,
        }
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TinyModelFlow()
