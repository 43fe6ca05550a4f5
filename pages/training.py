"""Training runs: the list, curves per run and overlaid across runs, starting a run with live
progress, and making a finished run the active model for Classify."""

import streamlit as st

from core.data.markdown import escape_markdown
from core.enums import ModelKind, RunStatus
from core.evaluation.figures import training_curves
from core.settings import get_settings
from core.training.hyperparameters import DEFAULTS
from core.training.jobs import list_jobs, start_training_job, stop_job
from services.active_models import ActivationError, activate_run, reset_active_models
from ui import data, resources
from ui.widgets import require_catalogue

settings = get_settings()
JOBS_DIR = settings.runs_dir / "jobs"
REFRESH_SECONDS = 3


def run_label(row: dict) -> str:
    best = row["best val accuracy"]
    return f"run {row['run']} · {row['model']} · {row['status']}" + (f" · val {best:.3f}" if best == best and best is not None else "")


st.title("Training")
require_catalogue()
jobs = list_jobs(JOBS_DIR)
live = any(job.running for job in jobs)


@st.fragment(run_every=REFRESH_SECONDS if live else None)
def runs_and_curves() -> None:
    frame = data.runs_frame()
    if frame.empty:
        st.info("No training runs yet. Start one below, or from the command line: `python -m core train --model all`.")
        return
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="training_runs_table",
        column_config={
            "best val accuracy": st.column_config.NumberColumn(format="%.3f"),
            "test accuracy": st.column_config.NumberColumn(format="%.3f"),
            "test macro-F1": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    labels = {int(row["run"]): run_label(row) for row in frame.to_dict("records")}
    chosen = st.multiselect(
        "Runs to plot (several overlay for comparison)",
        list(labels),
        default=list(labels)[:1],
        format_func=labels.get,
        key="training_plot_runs",
    )
    metric_col, smoothing_col = st.columns(2)
    metric = metric_col.radio("Curve", ["loss", "accuracy"], horizontal=True, key="training_metric")
    smoothing = smoothing_col.slider(
        "Smoothing", 0.0, 0.9, 0.0, 0.1, key="training_smoothing", help="Exponential moving average over epochs, as TensorBoard's"
    )
    epochs = data.epochs_frame(chosen)
    if epochs.empty:
        st.caption("The chosen runs have no finished epoch yet.")
    else:
        st.plotly_chart(
            training_curves(epochs, metric=metric, smoothing=smoothing, run_names={run: f"run {run}" for run in chosen}),
            key="training_curves",
        )
    for job in [job for job in list_jobs(JOBS_DIR) if job.running]:
        with st.container(border=True):
            st.markdown(f"**Training the {job.kind} model** (process {job.pid})")
            st.code(job.log_tail() or "starting…", language=None)
            if st.button("Stop this run", key=f"training_stop_{job.pid}"):
                stop_job(job)
                st.rerun()


runs_and_curves()

st.subheader("Start a run", anchor=False)
kind = st.selectbox("Model", list(ModelKind), key="training_kind", help="The combined model builds on the latest finished text run.")
defaults = DEFAULTS[kind]
with st.form(f"training_form_{kind}"):
    columns = st.columns(4)
    epochs_value = columns[0].number_input("Epochs", 1, 200, defaults.epochs)
    lr_value = columns[1].number_input("Learning rate", 1e-6, 1.0, defaults.lr, format="%.5f")
    batch_value = columns[2].number_input("Batch size", 1, 1024, defaults.batch_size)
    options: dict[str, object] = {"epochs": int(epochs_value), "lr": float(lr_value), "batch_size": int(batch_value)}
    if defaults.optimizer == "sgd":
        options["momentum"] = float(columns[3].number_input("Momentum", 0.0, 0.999, defaults.momentum))
    else:
        options["finetune_layers"] = int(columns[3].number_input("Encoder layers fine-tuned", 0, 6, defaults.finetune_layers))
    if kind == ModelKind.COMBINED:
        options["text_folds"] = int(
            st.number_input(
                "Text fold models",
                0,
                10,
                defaults.text_folds,
                help="0: the text branch reads the text model's features. K: it reads the text model's logits, cross-fitted on the "
                "training side by K fold models (K more text trainings: 5 took 25 minutes on the shared data).",
            )
        )
    started = st.form_submit_button("Start training", type="primary")
if started:
    if live:
        st.warning("A run is already training; on 2 cores two runs would only slow each other down. Stop it first.")
    else:
        job = start_training_job(kind, options, jobs_dir=JOBS_DIR)
        st.success(f"Started: {' '.join(job.command[1:])}")
        st.rerun()

st.subheader("Active models for Classify", anchor=False)
active = settings.models_dir == settings.active_models_dir
st.caption(f"Classify uses {'runs made active here' if active else 'the shipped models'} ({settings.models_dir}).")
finished = data.runs_frame()
finished = finished[finished["status"] == RunStatus.FINISHED]
if not finished.empty:
    labels = {int(row["run"]): run_label(row) for row in finished.to_dict("records")}
    run_id = st.selectbox("Finished run", list(labels), format_func=labels.get, key="training_activate_run")
    if st.button("Make active", key="training_activate"):
        try:
            with st.spinner("Installing the models and calibrating them on their validation products…"):
                catalogue = resources.catalogue()
                manifest = activate_run(
                    data.engine(),
                    run_id,
                    active_dir=settings.active_models_dir,
                    current_dir=settings.models_dir,
                    catalogue_fingerprint=catalogue.fingerprint(),
                    calibrate_on=catalogue,
                    cache_dir=settings.cache_dir,
                )
        except ActivationError as error:
            st.error(f"Not activated: {escape_markdown(str(error))}")
        else:
            st.success("Active now: " + ", ".join(f"{name} run {entry.get('run_id')}" for name, entry in manifest["models"].items()))
if active and st.button("Back to the shipped models", key="training_reset"):
    reset_active_models(settings.active_models_dir)
    st.rerun()
