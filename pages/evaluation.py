"""Model quality: metrics, per-class scores and a confusion matrix whose cells open their items;
the active models on held-out products, or any training run; two side by side."""

import streamlit as st

from core.data.images import media_path_for
from core.data.markdown import escape_markdown
from core.enums import ModelKind, RunStatus
from core.evaluation.figures import confusion_figure, reliability_figure, selected_cell
from core.evaluation.metrics import PredictionSet, cell_items, compare_metrics, per_class_frame, review_candidates
from core.models.manifest import ModelFileError
from services import review_queue
from ui import data, resources
from ui.widgets import job_progress, product_detail_from_query, require_catalogue, show_photo

ACTIVE = "Active models"
ITEMS_SHOWN = 30
NO_CELL = "(choose)"


def sources() -> dict[str, tuple[str, int | None]]:
    """Option label -> (model kind, run id or None for the active models)."""
    options: dict[str, tuple[str, int | None]] = {f"{ACTIVE} · {kind}": (kind, None) for kind in reversed(ModelKind)}
    frame = data.runs_frame()
    for row in frame[frame["status"] == RunStatus.FINISHED].to_dict("records"):
        accuracy = row["test accuracy"]
        label = f"Run {row['run']} · {row['model']}" + (
            f" · test accuracy {accuracy:.3f}" if accuracy == accuracy and accuracy is not None else ""
        )
        options[label] = (row["model"], int(row["run"]))
    return options


def load(option: tuple[str, int | None]) -> PredictionSet | None:
    """None while the active models' held-out evaluation runs in the background."""
    kind, run_id = option
    if run_id is not None:
        return data.run_prediction_set(run_id)
    held_out = resources.held_out()
    return None if held_out is None else held_out[kind]


def evaluation_progress() -> None:
    job_progress(resources.held_out_job_key(), waiting="The active models' figures")
    st.caption(
        "The catalogue has changed since the models were shipped, so they are measured on its held-out products "
        "again, in the background. Training runs are listed already."
    )


def metric_row(metrics: dict) -> None:
    columns = st.columns(4)
    columns[0].metric("Accuracy", f"{metrics['accuracy']:.1%}" if metrics["n"] else "–")
    columns[1].metric("Top-3 accuracy", f"{metrics['top3_accuracy']:.1%}" if metrics["n"] else "–")
    columns[2].metric("Macro-F1", f"{metrics['macro_f1']:.3f}" if metrics["n"] else "–")
    columns[3].metric("Items", f"{metrics['n']:,}")


def trust_section(metrics: dict) -> None:
    """Calibration error, the reliability diagram, and what the model files automatically."""
    if metrics.get("ece") is None:
        st.caption("No figures of trust for these predictions (stored before they were measured).")
        return
    columns = st.columns(4)
    before, floor = metrics.get("ece_uncalibrated"), metrics.get("ece_floor")
    columns[0].metric(
        "Calibration error (ECE)",
        f"{metrics['ece']:.3f}",
        delta=None if before is None else f"{metrics['ece'] - before:+.3f} from {before:.3f}",
        delta_color="inverse",
        help="Expected calibration error over 15 bins of the top probability: how far confidence is from accuracy",
    )
    confident, sets = metrics.get("confident"), metrics.get("prediction_sets")
    if confident:
        accuracy = confident["accuracy"]
        columns[1].metric(
            "Filed automatically",
            f"{confident['share']:.1%}",
            help=f"Answers with a calibrated probability of at least {confident['threshold']:.3f} (chosen on validation)",
        )
        columns[2].metric("Accuracy of those", "–" if accuracy is None else f"{accuracy:.1%}")
    if sets:
        columns[3].metric(
            f"Prediction sets at {sets['confidence']:.0%}",
            f"{sets['coverage']:.1%} hold it",
            help=f"Mean size {sets['mean_size']:.2f} categories; the rest of the answers are given as such a short list",
        )
    st.plotly_chart(reliability_figure(metrics), key="eval_reliability")
    coverage = metrics["coverage"]
    st.caption(
        "Most confident answers only: "
        + ", ".join(
            f"the top {float(share):.0%} are {accuracy:.1%} accurate" for share, accuracy in coverage["accuracy_at_coverage"].items()
        )
        + f"; {coverage['coverage_at_accuracy']:.1%} of the items can be answered at {coverage['target_accuracy']:.0%} accuracy."
        + (
            ""
            if floor is None
            else f" On {metrics['n']:,} items a perfectly calibrated model would show an ECE of about {floor:.3f} by chance alone."
        )
    )


def choose_cell() -> None:
    """A click on the matrix fills the two boxes below it (they also work on their own)."""
    cell = selected_cell(st.session_state.get("eval_matrix"))
    if cell is not None:
        st.session_state["eval_true"], st.session_state["eval_predicted"] = cell


def send_to_review(candidates: list[dict]) -> None:
    added = review_queue.add_to_queue(
        data.engine(), [review_queue.QueueEntry(**candidate, is_issue=False, source="evaluation") for candidate in candidates]
    )
    st.session_state["eval_sent"] = f"{added} of {len(candidates)} products added to the review queue (the others were queued already)."


def show_cell_items(predictions: PredictionSet, true_label: str, predicted_label: str) -> None:
    items = cell_items(predictions, true_label=true_label, predicted_label=predicted_label)
    if true_label != predicted_label and len(items):
        candidates = review_candidates(items, predictions.labels)
        st.button(
            f"Send these {len(candidates)} products to the review queue",
            key="eval_send_review",
            on_click=send_to_review,
            args=(candidates,),
        )
        if "eval_sent" in st.session_state:
            st.success(st.session_state.pop("eval_sent"))
    verb = "correctly classified" if true_label == predicted_label else f"predicted as {predicted_label}"
    st.markdown(
        f"**{len(items):,} items of {escape_markdown(true_label)} {escape_markdown(verb)}**"
        + (f" · the {ITEMS_SHOWN} most confident shown" if len(items) > ITEMS_SHOWN else "")
    )
    shown = items.head(ITEMS_SHOWN)
    products = {product.id: product for product in data.products_by_ids(data.database_url(), tuple(shown["product_id"]))}
    for row in shown.itertuples():
        product = products.get(row.product_id)
        with st.container(border=True):
            photo_col, text_col, button_col = st.columns([1, 5, 1], vertical_alignment="center")
            with photo_col:
                photo = (
                    media_path_for(row.item_id)
                    if predictions.kind == ModelKind.IMAGE
                    else (product.image_paths[0] if product and product.image_paths else None)
                )
                show_photo(photo)
            text_col.markdown(f"**{escape_markdown(product.name if product else row.product_id)}**")
            text_col.caption(
                f"true: {escape_markdown(true_label)} · predicted: {escape_markdown(predicted_label)} · confidence {row.confidence:.1%}"
                + (f" · now labelled {escape_markdown(product.category)}" if product and product.top_level != true_label else "")
            )
            if product and button_col.button("Open", key=f"eval_open_{row.item_id}"):
                st.query_params["product"] = product.id
                st.rerun()


st.title("Evaluation")
require_catalogue()
if not product_detail_from_query():
    options = sources()
    chosen = st.selectbox(
        "Model",
        list(options),
        key="eval_source",
        help="The active models are measured on the held-out test products of their split; a run on its own test part.",
    )
    try:
        predictions = load(options[chosen])
    except ModelFileError as error:
        st.error(f"The models could not be loaded: {escape_markdown(str(error))}")
        st.stop()
    if predictions is None:
        evaluation_progress()
        st.stop()
    metrics = predictions.metrics()
    st.caption(
        f"{predictions.name}: {predictions.part} part, {'per photo' if predictions.kind == 'image' else 'per product'}"
        + (f" · {predictions.note}" if predictions.note else "")
    )
    metric_row(metrics)

    matrix_tab, classes_tab, trust_tab, compare_tab = st.tabs(["Confusion matrix", "Per-class scores", "Calibration", "Compare"])
    with matrix_tab:
        normalise = st.toggle("Share of each true category (row-normalised)", key="eval_normalise")
        st.plotly_chart(
            confusion_figure(metrics, normalise=normalise),
            key="eval_matrix",
            on_select=choose_cell,
            selection_mode="points",
            width="content",
        )
        st.caption("Click a cell to list its items, or choose the two categories here.")
        labels = predictions.labels
        true_col, predicted_col = st.columns(2)
        true_label = true_col.selectbox("True category", [NO_CELL, *labels], key="eval_true")
        predicted_label = predicted_col.selectbox("Predicted category", [NO_CELL, *labels], key="eval_predicted")
        if NO_CELL not in (true_label, predicted_label):
            show_cell_items(predictions, true_label, predicted_label)
    with classes_tab:
        st.dataframe(
            per_class_frame(metrics),
            hide_index=True,
            width="stretch",
            column_config={
                name: st.column_config.ProgressColumn(name, min_value=0, max_value=1, format="%.3f")
                for name in ("precision", "recall", "f1")
            },
        )
    with trust_tab:
        trust_section(metrics)
    with compare_tab:
        others = [option for option in options if option != chosen]
        other = st.selectbox("Compare with", others, key="eval_other")
        try:
            other_predictions = load(options[other])
        except ModelFileError as error:
            st.error(f"The models could not be loaded: {escape_markdown(str(error))}")
        else:
            if other_predictions is None:
                evaluation_progress()
                st.stop()
            other_metrics = other_predictions.metrics()
            summary, per_class = compare_metrics(metrics, other_metrics, names=(chosen, other))
            st.dataframe(summary, hide_index=True, width="stretch")
            st.caption("Per-class F1, most changed first (difference = right minus left)")
            st.dataframe(per_class, hide_index=True, width="stretch")
            left_col, right_col = st.columns(2)
            left_col.plotly_chart(confusion_figure(metrics, normalise=True, title=chosen[:60]), key="eval_compare_left")
            right_col.plotly_chart(confusion_figure(other_metrics, normalise=True, title=other[:60]), key="eval_compare_right")
