# mypy: ignore-errors
# (Metaflow parameters are declared as `Parameter` and read as values: not typeable.)
"""Failure model of device tests: which (test, device family, change) is likely to fail,
and the threshold that keeps 99% of failing tests while running as few as possible.

Reads the lab's own history when it holds enough builds (`--source lab`), else generates
history with planted causes (components a change touches, device families prone to a
failure, flaky tests). Gradient boosting is the model; when TensorFlow is importable a
small Keras network on the same features is trained and compared in the card.
"""

from metaflow import FlowSpec, Parameter, card, current, step


class TestFailureFlow(FlowSpec):
    """Gradient boosting over history features, against random selection at equal recall."""

    source = Parameter("source", default="auto", help="lab, generated or auto (lab if enough).")
    tests = Parameter("tests", default=120, type=int, help="Generated catalog size.")
    families = Parameter("families", default=8, type=int, help="Generated device families.")
    builds = Parameter("builds", default=60, type=int, help="Generated builds.")
    recall = Parameter("recall", default=0.99, type=float, help="Failing-test recall target.")
    seed = Parameter("seed", default=7, type=int, help="Seed of the generated history.")

    @step
    def start(self) -> None:
        from popcorn.devicelab import prediction

        records = []
        if self.source in ("auto", "lab"):
            records = prediction.lab_history()
            if self.source == "lab" and not records:
                raise SystemExit("the lab has no history yet: use --source generated")
        enough = len({r["build"] for r in records}) >= 10
        if self.source == "generated" or not enough:
            world = prediction.make_world(tests=self.tests, families=self.families, seed=self.seed)
            records = prediction.generate_history(world, builds=self.builds, seed=self.seed)
            self.history_source = "generated"
        else:
            self.history_source = "lab"
        self.records = records
        self.next(self.train)

    @step
    def train(self) -> None:
        from popcorn.devicelab import prediction

        self.model, self.measured = prediction.fit_and_evaluate(
            self.records, recall=self.recall, seed=self.seed
        )
        self.input_schema = dict(prediction.INPUT_SCHEMA)
        self.keras = prediction.keras_comparison(self.records, recall=self.recall, seed=self.seed)
        self.next(self.evaluate)

    @card(type="blank", options={"title": "Device test failure model"})
    @step
    def evaluate(self) -> None:
        from metaflow.cards import Markdown, Table

        from popcorn.devicelab import prediction

        m = self.measured
        self.evaluation = {
            "metric": f"fraction_run_at_{round(self.recall * 100)}pct_recall",
            "model": round(m["fraction_run"], 5),
            "baseline": round(m["random_fraction"], 5),
            "higher_is_better": False,
            # Device lab test selection reads these: the score at or above which a
            # (test, family) runs, per recall target, calibrated on held-out builds.
            "recall_target": self.recall,
            "recall": round(m["recall"], 5),
            "thresholds": m["thresholds"],
        }
        # The card (Metaflow's own), and the same report as static HTML for the console.
        self.html = prediction.card_html(self.evaluation, m, self.keras, self.history_source)
        current.card.append(Markdown("# Device test failure model"))
        current.card.append(
            Markdown(
                f"History: {self.history_source}; {int(m['rows'])} held-out (test, family) "
                f"rows, {int(m['failures'])} failures; recall target {self.recall:.0%}."
            )
        )
        current.card.append(
            Table(
                prediction.card_rows(m, self.keras),
                headers=["selection", "tests run", "failing-test recall"],
            )
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        print("evaluation", self.evaluation)


if __name__ == "__main__":
    TestFailureFlow()
