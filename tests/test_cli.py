"""The command line through its entry point: outputs, run folders, and every bad input's error.

Text runs use a tiny BERT folder built in the test (``hf:<folder>``), image runs the shipped
EfficientNet-Lite0 on a few real digits, so each case takes seconds.
"""

from __future__ import annotations

import json

import pytest
import torch


from conftest import assert_clean_error, run_cli, write_digit_folder, write_sentiment_csv, write_truncated_jpeg



def _text_train(capsys, tiny_bert_dir, data, out, *extra) -> tuple[int, str, str]:
    return run_cli(capsys, "-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", data,
                   "--out", out, "--epochs", "3", *extra)


def test_train_evaluate_predict_text(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    out = tmp_path / "run"
    code, stdout, err = _text_train(capsys, tiny_bert_dir, sentiment_csv, out)
    assert code == 0, err
    assert f"run folder: {out}" in stdout and "accuracy:" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "model_spec.json", "metrics.jsonl", "model.safetensors",
            "test_metrics.json", "learning_curve.png", "train.log", "assets"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert {"accuracy", "macro_f1", "n", "confusion_matrix"} <= set(metrics)
    assert len(metrics["confusion_matrix"]) == 2

    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json")
    assert code == 0
    evaluated = json.loads(stdout)
    # The run's own data is scored on the run's own test split: same numbers as training wrote.
    assert evaluated["n"] == metrics["n"] and evaluated["accuracy"] == pytest.approx(metrics["accuracy"])
    code, stdout, _ = run_cli(capsys, "evaluate", out)  # the text output says what it scored
    assert code == 0 and "scored: the run's own test split" in stdout

    code, stdout, _ = run_cli(capsys, "predict", out, "good great film", "bad terrible movie", "--json", "-k", "2")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["input"] for r in rows] == ["good great film", "bad terrible movie"]
    for row in rows:
        assert row["label"] in ("neg", "pos") and 0 <= row["score"] <= 1 and len(row["top_k"]) == 2
        assert row["top_k"][0]["label"] == row["label"]

    # a folder: one text per .txt file below it, named by its path, scored as the text itself
    docs = tmp_path / "docs"
    (docs / "more").mkdir(parents=True)
    (docs / "a.txt").write_text("good great film\n")
    (docs / "more" / "b.txt").write_text("bad terrible movie")
    (docs / ".hidden.txt").write_text("not a document")
    code, stdout, _ = run_cli(capsys, "predict", out, docs, "--json", "-k", "2")
    assert code == 0
    from_files = [json.loads(line) for line in stdout.splitlines()]
    assert [r["input"] for r in from_files] == [str(docs / "a.txt"), str(docs / "more" / "b.txt")]
    assert [r["top_k"] for r in from_files] == [r["top_k"] for r in rows]
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "predict", out, tmp_path / "empty")
    assert_clean_error(code, err, "holds no .txt files")


def test_config_reproduces_run(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert _text_train(capsys, tiny_bert_dir, sentiment_csv, first, "--strategy", "full", "--epochs", "2")[0] == 0
    code, _, err = run_cli(capsys, "-q", "train", "--config", first / "config.yaml", "--out", second)
    assert code == 0, err
    a = json.loads((first / "test_metrics.json").read_text())
    b = json.loads((second / "test_metrics.json").read_text())
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    lines_a = [json.loads(x)["train_loss"] for x in (first / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(x)["train_loss"] for x in (second / "metrics.jsonl").read_text().splitlines()]
    assert lines_a == lines_b  # deterministic on the CPU: same seed, same losses


def test_lbfgs_head_solver(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    code, _, err = _text_train(capsys, tiny_bert_dir, sentiment_csv, tmp_path / "r", "--head-solver", "lbfgs")
    assert code == 0, err
    phases = {json.loads(x)["phase"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()}
    assert phases == {"head-lbfgs"}


def test_models_lists_sources(capsys) -> None:
    code, stdout, _ = run_cli(capsys, "models", "resnet18")
    assert code == 0
    assert "torchvision:resnet18" in stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "nope:thing"], ["nope"]),
        (["--model", "torchvision:not_a_model"], ["not_a_model"]),
        (["--model", "torchvision:resnet18"], ["resnet18", "--weights", "--no-pretrained"]),
        (["--strategy", "everything"], ["strategy"]),
        (["--strategy", "lp-ft", "--probe-energy", "1.5"], ["probe_energy", "[0, 1)", "1.5"]),
    ],
    ids=["unknown-source", "unknown-torchvision-model", "weights-offline", "unknown-strategy",
         "probe-energy-out-of-range"],
)
def test_bad_model_inputs(capsys, tmp_path, monkeypatch, digit_folder, args, fragments) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    base = ["--model", "builtin:efficientnet_lite0"]
    if "--model" in args:
        base = []
    code, _, err = run_cli(capsys, "train", *base, "--data", digit_folder, "--out", tmp_path / "r", *args)
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()  # stopped before any work


def test_weights_file_that_does_not_fit(capsys, tmp_path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3)}, str(weights))
    code, _, err = run_cli(capsys, "train", "--model", "torchvision:resnet18", "--weights", weights,
                           "--data", tmp_path, "--out", tmp_path / "r")
    assert_clean_error(code, err, "conv1.weight")


def test_bad_data_inputs(capsys, tmp_path, tiny_bert_dir) -> None:
    cases = {}
    (tmp_path / "nolabel.csv").write_text("text,category\ngood film,pos\nbad film,neg\n")
    cases["nolabel.csv"] = ["label", "--label-column"]
    (tmp_path / "notext.csv").write_text("body,label\ngood film,pos\nbad film,neg\n")
    cases["notext.csv"] = ["text", "--text-column"]
    (tmp_path / "oneclass.csv").write_text("text,label\n" + "good film,pos\n" * 10)
    cases["oneclass.csv"] = ["only the class", "at least two"]
    for name, fragments in cases.items():
        code, _, err = _text_train(capsys, tiny_bert_dir, tmp_path / name, tmp_path / f"r-{name}")
        assert_clean_error(code, err, *fragments)


def test_empty_class_folder(capsys, tmp_path) -> None:
    root = write_digit_folder(tmp_path / "imgs", per_class=5)
    (root / "7").mkdir()
    code, _, err = run_cli(capsys, "train", "--model", "builtin:efficientnet_lite0", "--data", root,
                           "--out", tmp_path / "r")
    assert_clean_error(code, err, "7")


def test_too_many_corrupt_images(capsys, tmp_path) -> None:
    root = write_digit_folder(tmp_path / "imgs", per_class=5)
    for i in range(3):
        write_truncated_jpeg(root / "0" / f"bad{i}.jpg")
    code, _, err = run_cli(capsys, "train", "--model", "builtin:efficientnet_lite0", "--data", root,
                           "--out", tmp_path / "r")
    assert_clean_error(code, err, "bad0.jpg", "raise --max-bad-fraction")
    # the option the message names: 3 of 18 skipped is fine when the user says so
    code, _, err = run_cli(capsys, "train", "--model", "builtin:efficientnet_lite0", "--data", root,
                           "--out", tmp_path / "r", "--image-size", "32", "--max-bad-fraction", "0.2")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "test_metrics.json").read_text())["skipped"]["unreadable_images"] == 3
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "r", "--data", root)  # evaluate takes the run's share
    assert code == 0, err
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "r", "--data", root, "--max-bad-fraction", "0.05")
    assert_clean_error(code, err, "more than the 5% that may be skipped (--max-bad-fraction)")


def test_few_corrupt_images_are_skipped_and_counted(capsys, tmp_path) -> None:
    root = write_digit_folder(tmp_path / "imgs", classes=(0, 1), per_class=30)
    write_truncated_jpeg(root / "0" / "broken.jpg")
    code, _, err = run_cli(capsys, "train", "--model", "builtin:efficientnet_lite0", "--data", root,
                           "--out", tmp_path / "r", "--epochs", "2")
    assert code == 0, err
    log = (tmp_path / "r" / "train.log").read_text()
    assert "broken.jpg" in log
    skipped = json.loads((tmp_path / "r" / "test_metrics.json").read_text())["skipped"]  # typed, not parsed from the log
    assert skipped["unreadable_images"] == 1 and skipped["unreadable_image_names"][0].endswith("broken.jpg")


def test_non_utf8_text_is_read_with_replacement(capsys, tmp_path, tiny_bert_dir) -> None:
    path = write_sentiment_csv(tmp_path / "t.csv")
    with path.open("ab") as f:
        f.write("caf\xe9 good film,pos\n".encode("latin-1"))
    code, _, err = _text_train(capsys, tiny_bert_dir, path, tmp_path / "r")
    assert code == 0, err
    assert "replacement" in (tmp_path / "r" / "train.log").read_text().lower()
    assert json.loads((tmp_path / "r" / "test_metrics.json").read_text())["skipped"]["non_utf8_texts"] == 1


def test_evaluate_with_unseen_label(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    run = tmp_path / "r"
    assert _text_train(capsys, tiny_bert_dir, sentiment_csv, run)[0] == 0
    other = tmp_path / "other.csv"
    other.write_text("text,label\ngood film,pos\nfunny film,comedy\n")
    code, _, err = run_cli(capsys, "evaluate", run, "--data", other)
    assert_clean_error(code, err, "comedy")
    assert "spelt like" not in err
    other.write_text("text,label\ngood film,Pos\nbad film,neg\n")  # a label spelt like a class
    code, _, err = run_cli(capsys, "evaluate", run, "--data", other)
    assert_clean_error(code, err, "Pos is spelt like the class pos; write it alike")
    # New data with other column names: the error names evaluate's own options, which name them
    other.write_text("review,stars\ngood great film,pos\nbad awful film,neg\n")
    code, _, err = run_cli(capsys, "evaluate", run, "--data", other)
    assert_clean_error(code, err, "its columns are: review, stars", "--text-column NAME", "--label-column NAME")
    code, stdout, err = run_cli(capsys, "evaluate", run, "--data", other, "--text-column", "review",
                                "--label-column", "stars", "--json")
    assert code == 0, err
    assert json.loads(stdout)["n"] == 2


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    code, _, err = _text_train(capsys, tiny_bert_dir, sentiment_csv, run)
    assert_clean_error(code, err, "already exists")
    assert [p.name for p in run.iterdir()] == ["keep.txt"]


def test_missing_run_folder(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "nowhere")
    assert_clean_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "predict", tmp_path / "nowhere", "x")
    assert_clean_error(code, err, "does not exist")


def test_missing_model_and_data(capsys) -> None:
    code, _, err = run_cli(capsys, "train")
    assert_clean_error(code, err, "--model", "--data")


def test_evaluate_same_data_given_relatively_scores_the_test_split(capsys, tmp_path, tiny_bert_dir,
                                                                   sentiment_csv, monkeypatch) -> None:
    run = tmp_path / "r"
    assert _text_train(capsys, tiny_bert_dir, sentiment_csv, run)[0] == 0
    saved = json.loads((run / "test_metrics.json").read_text())
    monkeypatch.chdir(sentiment_csv.parent)
    code, stdout, _ = run_cli(capsys, "evaluate", run, "--data", sentiment_csv.name, "--json")
    assert code == 0
    # Relative path to the training data: still the run's held-out split, never training rows.
    assert json.loads(stdout)["n"] == saved["n"] < 30
