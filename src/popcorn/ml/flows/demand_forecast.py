# mypy: ignore-errors
# (Metaflow parameters are declared as `Parameter` and read as values: not typeable.)
"""Demand forecast per region, backtested by rolling origin against seasonal-naive.

Reads hourly history from the signals domain when it holds a `requests_per_second`
series per region (through its facade), else generates one.
"""

from metaflow import FlowSpec, Parameter, card, current, step


class DemandForecastFlow(FlowSpec):
    """Hour-of-week profile x recent level per region, beside seasonal-naive."""

    regions = Parameter(
        "regions", default="us-east,us-west,eu-west,ap-south", help="Comma-separated regions."
    )
    weeks = Parameter("weeks", default=8, type=int, help="Weeks of hourly history.")
    seed = Parameter("seed", default=11, type=int, help="Seed of the generated history.")

    @step
    def start(self) -> None:
        from popcorn.ml import forecast, platform

        names = [r.strip() for r in self.regions.split(",") if r.strip()]
        # Both histories end at this hour (signals are read up to it; the generated one
        # stands in for the weeks before it), so traffic can ask for wall-clock hours.
        self.ends_at = platform.this_hour()
        found = platform.region_history(names, weeks=self.weeks)
        self.source = "signals" if found else "generated"
        self.history = found or forecast.generate_history(names, weeks=self.weeks, seed=self.seed)
        self.next(self.train)

    @step
    def train(self) -> None:
        from popcorn.ml import forecast

        self.model = forecast.SeasonalProfile(ends_at=self.ends_at).fit(self.history)
        self.input_schema = {"region": "str", "hours_ahead": "int"}
        self.next(self.evaluate)

    @card(type="blank")
    @step
    def evaluate(self) -> None:
        from metaflow.cards import VegaChart

        from popcorn.ml import cards, charts, forecast

        self.backtest = forecast.backtest(self.history)
        self.evaluation = {
            "metric": "mape",
            "model": round(self.backtest["model_mape"], 5),
            "baseline": round(self.backtest["naive_mape"], 5),
            "higher_is_better": False,
        }
        rows = [
            [r, round(self.model.forecast(r, 1), 1), round(self.model.forecast(r, 24), 1)]
            for r in self.history
        ]
        cards.report(
            current.card,
            f"Demand forecast (run {current.run_id})",
            self.evaluation,
            [
                (
                    "Rolling-origin backtest (last 14 days, 24 h horizon)",
                    ["forecast", "MAPE"],
                    [
                        ["hour-of-week profile", self.backtest["model_mape"]],
                        ["seasonal-naive (a week ago)", self.backtest["naive_mape"]],
                    ],
                ),
                (f"Next hours (history: {self.source})", ["region", "+1 h", "+24 h"], rows),
            ],
        )
        week = [
            {"hours ahead": h, "requests/s": round(self.model.forecast(r, h), 1), "region": r}
            for r in self.history
            for h in range(1, 24 * 7 + 1)
        ]
        current.card.append(
            VegaChart(charts.line_spec("Next week", week, "hours ahead", "requests/s", "region"))
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        print("mape", self.evaluation)


if __name__ == "__main__":
    DemandForecastFlow()
