# mypy: ignore-errors
# (Metaflow parameters are declared as `Parameter` and read as values: not typeable.)
"""Recommendations: implicit-feedback matrix factorisation over a viewing log.

Run by Popcorn as a file (`popcorn ml run recommendations`); the model class lives in
`popcorn.ml.recommend` so the pickled model loads without this file.
"""

from metaflow import FlowSpec, Parameter, card, current, step


class RecommendationsFlow(FlowSpec):
    """ALS recommendations with recall@k and NDCG@k beside a popularity baseline."""

    members = Parameter("members", default=5000, type=int, help="Members in the generated log.")
    titles = Parameter("titles", default=1000, type=int, help="Titles in the catalogue.")
    plays = Parameter("plays", default=50000, type=int, help="Plays in the viewing log.")
    factors = Parameter("factors", default=16, type=int, help="Latent factors.")
    iterations = Parameter("iterations", default=8, type=int, help="ALS iterations.")
    k = Parameter("k", default=20, type=int, help="Cut-off for recall@k and NDCG@k.")
    seed = Parameter("seed", default=7, type=int, help="Seed of the generated log.")

    @step
    def start(self) -> None:
        from popcorn.ml import recommend

        self.log = recommend.generate_log(
            members=self.members, titles=self.titles, plays=self.plays, seed=self.seed
        )
        self.train_matrix, self.test_matrix = recommend.split_by_time(self.log, test_days=7)
        self.next(self.train)

    @step
    def train(self) -> None:
        import time

        from popcorn.ml import recommend

        began = time.perf_counter()
        self.user_factors, self.item_factors = recommend.train_als(
            self.train_matrix, factors=self.factors, iterations=self.iterations
        )
        self.train_seconds = time.perf_counter() - began
        self.next(self.evaluate)

    @card(type="blank")
    @step
    def evaluate(self) -> None:
        import numpy as np

        from popcorn.ml import cards, recommend

        model = recommend.evaluate(
            self.train_matrix,
            self.test_matrix,
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            k=self.k,
        )
        baseline = recommend.evaluate(
            self.train_matrix, self.test_matrix, user_factors=None, item_factors=None, k=self.k
        )
        self.metrics = {"model": model, "popularity": baseline}
        recall = f"recall@{self.k}"
        self.evaluation = {
            "metric": recall,
            "model": round(float(model[recall]), 5),
            "baseline": round(float(baseline[recall]), 5),
            "higher_is_better": True,
        }
        popularity = np.asarray((self.train_matrix > 0).sum(axis=0)).ravel().astype(np.float32)
        demand = recommend.regional_demand(self.log, self.user_factors, self.item_factors)
        self.model = recommend.Recommender(
            self.user_factors, self.item_factors, self.train_matrix, popularity, demand
        )
        self.input_schema = {"member": "int"}
        ndcg = f"ndcg@{self.k}"
        top = sorted(demand["us-east"].items(), key=lambda x: -x[1])[:10]
        cards.report(
            current.card,
            f"Recommendations (run {current.run_id})",
            self.evaluation,
            [
                (
                    "Offline metrics on the last 7 days (time split)",
                    ["policy", recall, ndcg],
                    [
                        ["ALS matrix factorisation", model[recall], model[ndcg]],
                        ["popularity", baseline[recall], baseline[ndcg]],
                    ],
                ),
                (
                    "Data and training",
                    ["members", "titles", "plays", "factors", "iterations", "train s"],
                    [
                        [
                            self.members,
                            self.titles,
                            self.plays,
                            self.factors,
                            self.iterations,
                            round(self.train_seconds, 2),
                        ]
                    ],
                ),
                ("Predicted plays next week, us-east", ["title", "plays"], top),
            ],
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        print("recall@k", self.evaluation)


if __name__ == "__main__":
    RecommendationsFlow()
