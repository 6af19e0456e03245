"""Magnitude pruning: schemes, the translation_prune task (masks held at zero through training, resume,
--update-freq, --reset-optimizer, fp32 master copies) and fairseq-kd-prune."""
import pytest
import torch

import fairseq_kd  # noqa: F401
from fairseq_kd import pruning
from fairseq_kd.errors import FairseqKDError
from fairseq_kd.tasks.translation_prune import TranslationPruneTask, fp32_master_copies

from helpers import USER_DIR, build_model, error_line, hypotheses, run, tool, train


def weights_of(task, arch="kd_lstm_1x32"):
    return pruning.prunable(build_model(task, arch=arch, seed=0).named_parameters())


@pytest.mark.parametrize("scheme", pruning.SCHEMES)
@pytest.mark.parametrize("ratio", [0.5, 0.8, 0.9])
def test_each_scheme_reaches_the_ratio(tiny_task, scheme, ratio):
    masks = pruning.compute_masks(weights_of(tiny_task), ratio, scheme)
    assert abs(pruning.overall_sparsity(masks) - ratio) <= 0.005


def test_class_uniform_ratio_in_every_class(tiny_task):
    masks = pruning.compute_masks(weights_of(tiny_task), 0.8, "class-uniform")
    for name, m in masks.items():
        assert abs((~m).float().mean().item() - 0.8) <= 0.5 / m.numel() + 1e-9 or m.numel() < 10, name


def test_class_blind_prunes_the_globally_smallest(tiny_task):
    w = weights_of(tiny_task)
    masks = pruning.compute_masks(w, 0.6, "class-blind")
    kept = torch.cat([w[n].detach().abs().flatten()[masks[n].flatten()] for n in w])
    dropped = torch.cat([w[n].detach().abs().flatten()[~masks[n].flatten()] for n in w])
    assert dropped.max() <= kept.min()


def test_class_distribution_uses_one_lambda_times_std(tiny_task):
    w = weights_of(tiny_task)
    masks = pruning.compute_masks(w, 0.7, "class-distribution")
    ratios = [(w[n].detach().abs()[~masks[n]].max() / w[n].detach().float().std()).item() for n in w if (~masks[n]).any()]
    lambdas_low = [(w[n].detach().abs()[masks[n]].min() / w[n].detach().float().std()).item() for n in w]
    assert max(ratios) <= min(lambdas_low) + 1e-6  # a single lambda separates pruned from kept in every class


def test_cubic_schedule():
    assert pruning.cubic_sparsity(0, 10, 100, 0.8) == 0.0
    assert pruning.cubic_sparsity(10, 10, 100, 0.8) == 0.0
    assert pruning.cubic_sparsity(60, 10, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert pruning.cubic_sparsity(500, 10, 100, 0.8) == 0.8


@pytest.mark.parametrize("ratio,scheme,message", [
    (1.0, "class-blind", "--prune-ratio must be in [0, 1), got 1.0"),
    (-0.1, "class-blind", "--prune-ratio must be in [0, 1), got -0.1"),
    (0.5, "random", "--prune-scheme must be one of class-blind, class-uniform, class-distribution, got 'random'"),
])
def test_bad_prune_options(ratio, scheme, message):
    with pytest.raises(FairseqKDError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        pruning.compute_masks({"w": torch.randn(4, 4)}, ratio, scheme)


def test_fp32_master_copies_are_masked(tiny_task):
    """The --fp16 path on CPU: fairseq's FP16Optimizer needs CUDA for its flat fp32 copy, so this builds the
    same flat and per-parameter master copies by hand and checks they are masked with the model."""
    model = build_model(tiny_task)
    task = TranslationPruneTask.__new__(TranslationPruneTask)
    task.masks = pruning.compute_masks(pruning.prunable(model.named_parameters()), 0.5, "class-blind")
    params = [p for p in model.parameters() if p.requires_grad]

    class Flat:
        fp32_params = {"cpu": torch.cat([p.detach().flatten().float() for p in params]).requires_grad_()}

    class PerParam:
        fp32_params = [p.detach().clone().float() for p in params]

    for opt in (Flat(), PerParam()):
        copies = fp32_master_copies(opt, model)
        assert set(copies) == {n for n, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            for c in copies.values():
                c.add_(1.0)  # an optimizer step moved every master weight off zero
        TranslationPruneTask.apply(task, model, opt)
        for name, mask in task.masks.items():
            assert copies[name][~mask].abs().max() == 0 and copies[name][mask].abs().min() > 0
            assert dict(model.named_parameters())[name][~mask].abs().max() == 0


# ---- end to end -------------------------------------------------------------------------------------

PRUNE = ["--task", "translation_prune", "--arch", "kd_lstm_1x32", "--encoder-embed-dim", "48", "--dropout", "0",
         "--criterion", "label_smoothed_cross_entropy", "--prune-ratio", "0.6", "--prune-scheme", "class-blind"]


def zero_pattern(ckpt):
    state = torch.load(ckpt, map_location="cpu")
    return {n: t.eq(0) for n, t in pruning.prunable(state["model"].items()).items()}, state


def zero_fraction(patterns):
    """Fraction of zero entries over zero patterns (True = 0)."""
    patterns = list(patterns)
    return sum(int(m.sum()) for m in patterns) / sum(m.numel() for m in patterns)


@pytest.fixture(scope="module")
def pruned_run(tiny_data, tiny_teacher, tmp_path_factory):
    save = tmp_path_factory.mktemp("pruned")
    run([tool("fairseq-kd-prune"), tiny_teacher, "--prune-ratio", "0.6", "--prune-scheme", "class-blind",
         "--output", save / "oneshot.pt"])
    proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", save, "--cpu", *PRUNE,
                "--finetune-from-model", tiny_teacher, "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300",
                "--max-update", "8", "--update-freq", "2", "--no-epoch-checkpoints", "--seed", "1"])
    return save, proc


def test_masks_hold_after_training_steps(pruned_run):
    save, proc = pruned_run
    expected, _ = zero_pattern(save / "oneshot.pt")  # the same magnitudes give the same mask
    got, state = zero_pattern(save / "checkpoint_last.pt")
    start, _ = zero_pattern(save / "oneshot.pt")
    assert state["optimizer_history"][-1]["num_updates"] == 8
    for name in expected:
        assert torch.equal(got[name] | ~expected[name], torch.ones_like(got[name])), name  # every pruned entry is 0
    # and the kept weights really trained
    moved = sum(int((t != 0).sum()) for t in pruning.prunable(state["model"].items()).values())
    assert moved > 0 and "pruned to 60.00%" in proc.stdout + proc.stderr
    assert abs(zero_fraction(got.values()) - 0.6) < 0.005
    assert start.keys() == got.keys()


def test_resume_keeps_the_mask(pruned_run, tiny_data, tmp_path):
    save, _ = pruned_run
    before, _ = zero_pattern(save / "checkpoint_last.pt")
    import shutil

    resume_dir = tmp_path / "resume"
    shutil.copytree(save, resume_dir)
    for extra in ([], ["--reset-optimizer"]):
        proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", resume_dir, "--cpu", *PRUNE,
                    "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300", "--no-epoch-checkpoints",
                    "--max-update", "14" if not extra else "20", *extra])
        # a plain resume takes the masks from the restored weights; --reset-optimizer restarts fairseq's
        # update count at 0, so the task prunes the restored weights again: their zeros are the smallest
        expected = "pruned to 60.00% at update 0" if extra else "masks restored from the restored weights"
        assert expected in proc.stdout + proc.stderr
        after, state = zero_pattern(resume_dir / "checkpoint_last.pt")
        for name in before:
            assert torch.equal(before[name], after[name]), name
    assert state["optimizer_history"][-1]["num_updates"] == 20


def test_pruned_model_loads_in_plain_generate(pruned_run, tiny_data):
    save, _ = pruned_run
    proc = run([tool("fairseq-generate"), tiny_data, "--user-dir", USER_DIR, "--path", save / "checkpoint_last.pt",
                "--gen-subset", "test", "--cpu", "--beam", "2"])
    assert len(hypotheses(proc.stdout)) == 24


def test_gradual_schedule_reaches_the_ratio(tiny_data, tiny_teacher, tmp_path):
    proc = train(tiny_data, tmp_path, *PRUNE[:-4], "--prune-ratio", "0.5", "--prune-schedule", "gradual",
                 "--prune-steps", "6", "--prune-frequency", "2", "--finetune-from-model", tiny_teacher,
                 "--max-update", "8", epochs=10)
    log = proc.stdout + proc.stderr
    assert "pruned to 50.00% at update 6" in log and "at update 2" in log
    got, _ = zero_pattern(tmp_path / "checkpoint_last.pt")
    assert abs(zero_fraction(got.values()) - 0.5) < 0.005


def test_prune_cli_bad_inputs(tiny_teacher, tmp_path):
    proc = run([tool("fairseq-kd-prune"), tiny_teacher, "--prune-ratio", "1", "--output", tmp_path / "x.pt"], check=False)
    assert error_line(proc) == "--prune-ratio must be in [0, 1), got 1.0"
    proc = run([tool("fairseq-kd-prune"), tmp_path / "none.pt", "--prune-ratio", "0.5", "--output", tmp_path / "x.pt"],
               check=False)
    assert error_line(proc) == f"checkpoint not found: {tmp_path / 'none.pt'}"
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("option,message", [
    (["--prune-ratio", "1.5"], "--prune-ratio must be in [0, 1), got 1.5"),
    (["--prune-exclude", "["], "--prune-exclude is not a valid regular expression "
                               "(unterminated character set at position 0): '['"),
])
def test_prune_task_bad_options(tiny_data, tmp_path, option, message):
    proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", tmp_path, "--cpu",
                "--task", "translation_prune", "--arch", "kd_lstm_1x32", *option,
                "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300"], check=False)
    assert error_line(proc) == message


def test_prune_task_refuses_a_checkpoint_of_another_architecture(tiny_data, tiny_teacher, tmp_path):
    """The teacher is 1x32 with 48-dim embeddings; retraining it as a plain kd_lstm_1x32 cannot load it."""
    proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", tmp_path, "--cpu",
                "--task", "translation_prune", "--arch", "kd_lstm_1x32", "--prune-ratio", "0.5",
                "--finetune-from-model", tiny_teacher, "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300"],
               check=False)
    last = error_line(proc)
    assert proc.returncode != 0
    assert last.startswith(f"checkpoint {tiny_teacher} does not fit the model being trained: "
                           "another architecture or dictionary (size mismatch for encoder.embed_tokens.weight"), last
    assert "Traceback" not in proc.stderr


def test_checkpoint_best_is_at_the_final_sparsity(tiny_data, tiny_teacher, tmp_path):
    # a schedule over 3 epochs (11 updates each) with a learning rate too small to recover: every pruning step makes the
    # validation loss worse, so fairseq alone would keep the first, least pruned validation as the best
    proc = train(tiny_data, tmp_path, *PRUNE[:-4], "--prune-ratio", "0.9", "--prune-schedule", "gradual",
                 "--prune-steps", "30", "--prune-frequency", "5", "--finetune-from-model", tiny_teacher,
                 "--lr", "1e-7", "--lr-scheduler", "fixed", epochs=6)
    log = proc.stdout + proc.stderr
    got, _ = zero_pattern(tmp_path / "checkpoint_best.pt")
    assert abs(zero_fraction(got.values()) - 0.9) < 0.005
    assert "the best loss of less-pruned models is forgotten" in log
    losses = [float(line.split("| loss ")[1].split()[0]) for line in log.splitlines() if "valid on 'valid'" in line]
    assert losses[0] < min(losses[-2:])  # the less-pruned first validation was better, and is not kept


# ---- --prune-exclude ----------------------------------------------------------------------------------

def test_exclude_keeps_matching_weights_dense(tiny_task):
    model = build_model(tiny_task, arch="kd_lstm_1x32", seed=0)
    weights = pruning.prunable(model.named_parameters(), exclude="embed_tokens")
    every = pruning.prunable(model.named_parameters())
    embeddings = {n for n in every if "embed_tokens" in n}
    assert embeddings and set(weights) == set(every) - embeddings
    masks = pruning.compute_masks(weights, 0.8, "class-blind")
    assert abs(pruning.overall_sparsity(masks) - 0.8) <= 0.005


@pytest.mark.parametrize("exclude,message", [
    ("embed_(", "--prune-exclude is not a valid regular expression"),
    (".", "--prune-exclude '.' matches every prunable weight"),
])
def test_bad_exclude(tiny_task, exclude, message):
    with pytest.raises(FairseqKDError, match=message.replace("(", r"\(").replace(".", r"\.")):
        pruning.prunable(build_model(tiny_task).named_parameters(), exclude=exclude)


def test_exclude_in_the_cli_and_the_task(tiny_data, tiny_teacher, tmp_path):
    before = torch.load(tiny_teacher, map_location="cpu")["model"]

    def embeddings_untouched_rest_80(ckpt):
        got, _ = zero_pattern(ckpt)
        for name, zeros in got.items():
            if "embed_tokens" in name:
                assert torch.equal(zeros, before[name].eq(0)), name  # never pruned (the padding row is 0)
        assert abs(zero_fraction(m for n, m in got.items() if "embed_tokens" not in n) - 0.8) < 0.005

    run([tool("fairseq-kd-prune"), tiny_teacher, "--prune-ratio", "0.8", "--prune-exclude", "embed_tokens",
         "--output", tmp_path / "oneshot.pt"])
    embeddings_untouched_rest_80(tmp_path / "oneshot.pt")

    proc = train(tiny_data, tmp_path / "train", *PRUNE[:-4], "--prune-ratio", "0.8", "--prune-exclude", "embed_tokens",
                 "--finetune-from-model", tiny_teacher, "--max-update", "4", epochs=10)
    assert "pruned to 80.00% at update 0" in proc.stdout + proc.stderr
    embeddings_untouched_rest_80(tmp_path / "train" / "checkpoint_last.pt")  # trained 4 updates

    proc = run([tool("fairseq-kd-prune"), tiny_teacher, "--prune-ratio", "0.8", "--prune-exclude", "[",
                "--output", tmp_path / "x.pt"], check=False)
    assert error_line(proc).startswith(
        "--prune-exclude is not a valid regular expression")
