"""Training runs for the app: progress, busy and stop, the on/off policy and its caps."""

import pytest
from _tiny import tiny_dir  # noqa: F401  (tiny_dir is a fixture)

from vaedemo import inference, jobs

pytestmark = pytest.mark.usefixtures("tiny_dir")


# ---------------------------------------------------------------------------------- training


def _collect(trainer, job_id):
    return list(trainer.events(job_id))


@pytest.mark.parametrize("apart", [True, False], ids=["worker-process", "server-thread"])
def test_training_run_reports_progress_and_saves_a_new_checkpoint(apart, monkeypatch):
    """Both ways a run trains: in a worker process (the default where there is a fork server), and in a thread
    of the server (ZeroGPU, Windows, VAEDEMO_TRAIN_PROCESS=off)."""
    import os

    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    monkeypatch.setenv("VAEDEMO_TRAIN_PROCESS", "on" if apart else "off")
    assert jobs.isolated() is apart
    trainer = jobs.TrainingManager()
    job = trainer.start(
        {
            "name": f"fresh-ae-{int(apart)}",
            "model": "ae",
            "latent_dim": 3,
            "epochs": 1,
            "max_train": 300,
            "batch_size": 100,
            "iwae_k": 0,
        }
    )
    pids = set()
    updates = []
    for update in trainer.events(job):
        pids.add(trainer.worker_pid(job))
        updates.append(update)
    pids.discard(None)  # before the worker started, and after it ended
    assert (len(pids) == 1 and os.getpid() not in pids) if apart else not pids
    last = updates[-1]
    assert last.done and last.error is None and last.checkpoint == f"fresh-ae-{int(apart)}"
    assert max(u.fraction for u in updates) == 1.0
    assert [u.seq for u in updates] == sorted(u.seq for u in updates)
    assert len(last.history) == 1 and last.history[0]["epoch"] == 1
    assert last.preview_recon.shape == last.preview_originals.shape == last.prior_samples.shape == (8, 28, 28)
    assert last.map_coords.shape == (len(last.map_labels), 2)
    assert f"fresh-ae-{int(apart)}" in [name for _, name in inference.checkpoint_choices()]
    assert inference.STORE.get(f"fresh-ae-{int(apart)}").latent_dim == 3
    assert not trainer.status()["busy"]


def test_training_is_busy_while_a_run_goes_and_stop_ends_it_early(monkeypatch):
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    trainer = jobs.TrainingManager()
    job = trainer.start(
        {"name": "long-run", "model": "vae", "latent_dim": 2, "epochs": 40, "max_train": 600, "iwae_k": 0}
    )
    with pytest.raises(ValueError, match=r"Training is busy: another run is going \(\d+% done, about \d+ s left\)"):
        trainer.start({"name": "second-run", "epochs": 1})
    assert trainer.status()["busy"] and trainer.status()["name"] == "long-run"
    asked = False
    for update in trainer.events(job):
        if update.history and not asked:  # one epoch done: ask it to stop
            asked = trainer.stop(job)
            assert asked
    last = update
    assert last.done and last.error is None
    assert len(last.history) < 40
    assert last.checkpoint == "long-run" and "Stopped" in last.message
    assert not trainer.status()["busy"] and trainer.stop(job) is False


def test_a_training_process_that_dies_ends_its_run_with_a_sentence_and_the_server_trains_again(monkeypatch):
    """A worker killed mid-run (out of memory, say) must not leave the tab busy forever: the run ends with a
    sentence, its finished epochs wait as an interrupted run, and the next run starts."""
    import os
    import signal

    from vaedemo import runs

    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    trainer = jobs.TrainingManager()
    job = trainer.start({"name": "killed-run", "model": "vae", "latent_dim": 2, "epochs": 40, "max_train": 600,
                         "iwae_k": 0})
    killed = False
    for update in trainer.events(job):
        if update.history and not update.done and not killed:  # one epoch done, and saved as a partial run
            os.kill(trainer.worker_pid(job), signal.SIGKILL)
            killed = True
    assert update.done and update.checkpoint is None
    assert "training process ended unexpectedly" in update.error and "continue" in update.error
    assert not trainer.status()["busy"]
    partial = {p.name: p for p in runs.partial_runs()}
    assert partial["killed-run"].epochs_done >= 1
    again = trainer.start({"name": "after-kill", "model": "ae", "latent_dim": 2, "epochs": 1, "max_train": 200,
                           "iwae_k": 0})
    assert _collect(trainer, again)[-1].checkpoint == "after-kill"
    runs.discard_partial("killed-run")


def test_training_refuses_when_turned_off_or_out_of_bounds(monkeypatch):
    trainer = jobs.TrainingManager()
    monkeypatch.setenv("VAEDEMO_TRAINING", "off")
    with pytest.raises(ValueError, match="turned off"):
        trainer.start({"name": "x1", "epochs": 1})
    monkeypatch.delenv("VAEDEMO_TRAINING")
    monkeypatch.setenv("SPACE_ID", "someone/vaedemo")
    assert jobs.training_policy() == {
        "enabled": False,
        "on_space": True,
        "max_epochs": 5,
        "max_train_items": 5000,
        "max_train_seconds": 300.0,
        "max_visitor_runs": 20,
    }
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    monkeypatch.setenv("VAEDEMO_MAX_EPOCHS", "3")
    with pytest.raises(ValueError, match="at most 3 epochs"):
        trainer.start({"name": "x2", "epochs": 4})
    spec = jobs.build_run_spec({"name": "x3", "max_train": 9000, "epochs": "2"})
    assert spec.max_train == 5000 and spec.train.max_seconds == 300 and spec.train.epochs == 2
    assert jobs.build_run_spec({"name": "x3", "prior_components": 10}).prior_components == 10
    for bad, words in [
        ({"name": "x4", "dataset": "/etc"}, "Unknown dataset"),
        ({"name": "x5", "resume": True}, "Unknown"),
        ({"name": "tiny-ae"}, "already exists"),
        ({"name": "x6", "lr": float("nan")}, "Lr"),
        ({"name": "x7", "latent_dim": 10**6}, "Latent dim"),
        ({"name": "../x"}, "not a valid"),
        ({"name": "x8", "model": "transformer"}, "Unknown model"),
        ({"name": "x9", "model": "ae", "beta": 2}, "beta"),
        ({"name": "x10", "model": "ae", "prior_components": 10}, "no prior to learn"),
        ({"name": "x11", "prior_components": -3}, "Prior components"),
    ]:
        with pytest.raises(ValueError, match=words):
            trainer.start(bad)
    with pytest.raises(ValueError, match="no training run"):
        list(trainer.events("nope"))


# ---------------------------------------------------------------------------------- visitor runs


def test_a_visitor_run_is_marked_and_never_becomes_the_default(monkeypatch):
    """Issue: a 1-epoch VAE named 'aux' became the preselected model in every list for every new visitor."""
    from vaedemo.ui.shared import pick

    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    trainer = jobs.TrainingManager()
    job = trainer.start(
        {"name": "a-visitor-vae", "model": "vae", "latent_dim": 2, "epochs": 1, "max_train": 200, "iwae_k": 0}
    )
    assert _collect(trainer, job)[-1].checkpoint == "a-visitor-vae"
    options = inference.checkpoint_choices()
    labels = dict((name, label) for label, name in options)
    assert labels["a-visitor-vae"].endswith("· visitor run")
    marks = [label.endswith("visitor run") for label, _ in options]
    assert marks == sorted(marks) and any(not m for m in marks)  # visitor runs are listed after the others
    chosen = pick(None, options)
    assert chosen != "a-visitor-vae" and not labels[chosen].endswith("visitor run")
    assert pick(None, [(labels["a-visitor-vae"], "a-visitor-vae")]) == "a-visitor-vae"  # alone, it is the one


def test_visitor_runs_are_kept_up_to_the_cap_oldest_removed_first(monkeypatch):
    import time

    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    monkeypatch.setenv("VAEDEMO_MAX_VISITOR_RUNS", "2")
    trainer = jobs.TrainingManager()
    for name in ("cap-1", "cap-2", "cap-3"):
        job = trainer.start({"name": name, "model": "ae", "latent_dim": 2, "epochs": 1, "max_train": 200, "iwae_k": 0})
        assert _collect(trainer, job)[-1].checkpoint == name
        time.sleep(1.1)  # creation times are recorded to the second
    names = [n for _, n in inference.checkpoint_choices()]
    assert "cap-1" not in names and {"cap-2", "cap-3"} <= set(names)
    assert {"tiny-ae", "tiny-vae"} & set(names)  # checkpoints not trained in the app are never removed
    visitors = [n for label, n in inference.checkpoint_choices() if label.endswith("visitor run")]
    assert len(visitors) == 2


@pytest.mark.parametrize("name", ["con", "nul", "aux", "com1", "lpt9", "prn", "aux.vae", "con.txt"])
def test_windows_device_names_are_refused(name, monkeypatch):
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    with pytest.raises(ValueError, match="Windows reserves"):
        jobs.TrainingManager().start({"name": name, "model": "ae", "epochs": 1})


def test_the_curve_gets_training_loss_points_before_the_first_epoch_ends(monkeypatch):
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    trainer = jobs.TrainingManager()
    job = trainer.start(
        {
            "name": "curve-run",
            "model": "vae",
            "latent_dim": 2,
            "epochs": 2,
            "max_train": 2000,
            "batch_size": 32,
            "iwae_k": 0,
        }
    )
    updates = _collect(trainer, job)
    first_epoch = [u for u in updates if not u.history and u.steps]
    assert first_epoch, "no training-loss point reached the page before the first epoch ended"
    xs = [x for x, _ in updates[-1].steps]
    assert xs == sorted(xs) and 0 < xs[0] < 1 and xs[-1] <= 2 and len(xs) >= 10
    previews = [u.seq for u in updates if u.preview_recon is not None]
    assert previews  # the previews still come, at most once a second and at the end


def test_a_worker_trains_on_the_servers_threads_less_one_unless_told(monkeypatch):
    """The browser and the server keep one thread; an operator whose visitors' browsers run elsewhere (a Space)
    can give the run all of them with VAEDEMO_TRAIN_THREADS. A value that is not a positive count is ignored."""
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.delenv("VAEDEMO_TRAIN_THREADS", raising=False)
    assert jobs.worker_threads() == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert jobs.worker_threads() == 1
    for value, threads in (("2", 2), ("0", 1), ("-3", 1), ("many", 1), ("", 1)):
        monkeypatch.setenv("VAEDEMO_TRAIN_THREADS", value)
        assert jobs.worker_threads() == threads, value
