# mypy: ignore-errors
# (Metaflow parameters are declared as `Parameter` and read as values: not typeable.)
"""Artwork personalization: a contextual bandit evaluated offline by replay."""

from metaflow import FlowSpec, Parameter, card, current, step


class ArtworkPersonalizationFlow(FlowSpec):
    """Beta-posterior bandit per (taste cluster, title, daypart) beside most-clicked."""

    events = Parameter("events", default=200000, type=int, help="Logged impressions.")
    titles = Parameter("titles", default=50, type=int, help="Titles with artwork.")
    clusters = Parameter("clusters", default=6, type=int, help="Member taste clusters.")
    seed = Parameter("seed", default=13, type=int, help="Seed of the generated log.")

    @step
    def start(self) -> None:
        from popcorn.ml import bandit

        self.log = bandit.generate_impressions(
            events=self.events, clusters=self.clusters, titles=self.titles, seed=self.seed
        )
        self.next(self.train)

    @step
    def train(self) -> None:
        from popcorn.ml import bandit

        half = self.events // 2
        self.train_log = {k: v[:half] for k, v in self.log.items()}
        self.test_log = {k: v[half:] for k, v in self.log.items()}
        self.model = bandit.ArtworkBandit(self.clusters, self.titles).fit(self.train_log)
        self.input_schema = {"cluster": "int", "title": "int", "hour": "int"}
        self.next(self.evaluate)

    @card(type="blank")
    @step
    def evaluate(self) -> None:
        import copy

        from popcorn.ml import bandit, cards

        learner = copy.deepcopy(self.model)  # keeps learning from the events it matches
        policy = bandit.replay(
            self.test_log, lambda c, t, h: learner.choose(c, t, h), learn=learner.update
        )
        rates = (self.model.title_clicks + 1) / (self.model.title_views + 2)
        best = rates.argmax(axis=1)
        baseline = bandit.replay(self.test_log, lambda c, t, h: int(best[t]))
        logged = float(self.test_log["clicked"].mean())
        self.evaluation = {
            "metric": "replay_ctr",
            "model": round(policy["ctr"], 5),
            "baseline": round(baseline["ctr"], 5),
            "higher_is_better": True,
        }
        cards.report(
            current.card,
            f"Artwork personalization (run {current.run_id})",
            self.evaluation,
            [
                (
                    "Offline replay on uniform-random logged impressions",
                    ["policy", "replay CTR", "matched events"],
                    [
                        ["contextual bandit", policy["ctr"], int(policy["matched"])],
                        [
                            "most-clicked artwork per title",
                            baseline["ctr"],
                            int(baseline["matched"]),
                        ],
                        ["uniform random (logging policy)", logged, len(self.test_log["clicked"])],
                    ],
                )
            ],
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        print("replay", self.evaluation)


if __name__ == "__main__":
    ArtworkPersonalizationFlow()
