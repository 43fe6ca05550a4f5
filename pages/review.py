"""Labelling review: the queue of likely mislabelled products, one item at a time with keyboard
shortcuts, every change in the label history, undo, and the history itself."""

import streamlit as st

from core.data.images import open_image
from core.data.markdown import escape_markdown
from core.enums import LabelSource
from core.settings import get_settings
from services import label_history, review, review_queue
from ui import data, resources
from ui.explanations import explanation
from ui.widgets import category_picker, photo_path, require_catalogue, show_photo

SHORTCUTS = {"keep": "K", "accept": "A", "other": "L", "spam": "N", "skip": "S", "previous": "Left", "next": "Right", "undo": "U"}


def message(kind: str, text: str) -> None:
    st.session_state["review_message"] = (kind, text)


def reviewer() -> str:
    return st.session_state.get("reviewer_name", "").strip()


def queue_filters() -> review_queue.QueueFilters:
    current = st.session_state.get("review_filter_current", "All")
    suggested = st.session_state.get("review_filter_suggested", "All")
    return review_queue.QueueFilters(
        None if current == "All" else current, None if suggested == "All" else suggested, st.session_state.get("review_filter_score")
    )


def show_item(product_id: str | None) -> None:
    trail: list[str] = st.session_state.setdefault("review_trail", [])
    if product_id and (not trail or trail[-1] != product_id):
        trail.append(product_id)
    st.session_state["review_current"] = product_id


def next_item(*, skip_current: bool = False) -> None:
    current = st.session_state.get("review_current")
    skipped: list[str] = st.session_state.setdefault("review_skipped", [])
    if skip_current and current:
        skipped.append(current)
    show_item(review.claim_next(data.engine(), reviewer(), filters=queue_filters(), skip=skipped))


def act(action: str, *, seen_version: int, category: str | None = None) -> None:
    """A button's callback: runs before the page reruns, so the next item is shown at once. The
    decision is checked against `seen_version`, the label version the reviewer was shown."""
    card = review.review_card(data.engine(), st.session_state["review_current"])
    if card is None:
        return
    try:
        if action == "accept":
            review.decide(
                data.engine(),
                card.product_id,
                action="relabel",
                reviewer=reviewer(),
                seen_version=seen_version,
                new_category=card.suggested_label,
                reason=f"review: accepted the suggestion ({card.suggested_label})",
            )
        elif action == "other":
            review.decide(
                data.engine(),
                card.product_id,
                action="relabel",
                reviewer=reviewer(),
                seen_version=seen_version,
                new_category=category,
                reason="review: picked by hand",
            )
        else:
            review.decide(data.engine(), card.product_id, action=action, reviewer=reviewer(), seen_version=seen_version)
    except (review.StaleLabelError, review.ReviewError) as error:
        message("error", escape_markdown(str(error)))
        return
    message(
        "success",
        f"{escape_markdown(card.name)}: {'kept' if action == 'keep' else 'not a product' if action == 'not_a_product' else 'relabelled'}",
    )
    data.invalidate()
    next_item()


def undo() -> None:
    try:
        product_id = review.undo_last(data.engine(), reviewer())
    except review.StaleLabelError as error:
        message("error", escape_markdown(str(error)))
        return
    if product_id is None:
        message("info", "Nothing of yours to undo.")
        return
    message("success", "Undone: the item is back in the queue.")
    data.invalidate()
    show_item(product_id)


def previous() -> None:
    trail: list[str] = st.session_state.get("review_trail", [])
    current = st.session_state.get("review_current")
    position = trail.index(current) if current in trail else len(trail)
    if position > 0:
        st.session_state["review_current"] = trail[position - 1]


def rebuild_queue() -> None:
    settings = get_settings()
    with st.spinner("Scoring every label by 5-fold cross-validation (a minute or two; embeddings are cached)…"):
        try:
            queued = review_queue.refresh_queue(data.engine(), cache_dir=settings.cache_dir, media_dir=settings.media_dir)
        except review.ReviewError as error:
            message("error", escape_markdown(str(error)))
            return
    message("success", f"{queued:,} products scored and queued, worst label first.")
    data.invalidate()


st.title("Labelling review")
require_catalogue()
engine = data.engine()
counts = review_queue.progress(engine)
st.text_input("Your name (recorded with every change)", key="reviewer_name", max_chars=100)

if "review_message" in st.session_state:
    kind, text = st.session_state.pop("review_message")
    getattr(st, kind)(text)

total = counts["reviewed"] + counts["remaining"]
metric_cols = st.columns(4)
metric_cols[0].metric("Reviewed", f"{counts['reviewed']:,}")
metric_cols[1].metric("Remaining", f"{counts['remaining']:,}")
metric_cols[2].metric("Relabelled", f"{counts['relabelled']:,}")
metric_cols[3].metric("Not a product", f"{counts['not_a_product']:,}")
if total:
    st.progress(counts["reviewed"] / total, text=f"{counts['reviewed']:,} of {total:,} reviewed")
if not total:
    st.info(
        "The review queue is empty. Build it: every product's label is scored by cross-validation, and cleanlab ranks the "
        "likely errors first (or run `python -m core review-queue`)."
    )
    st.button("Build the review queue", type="primary", on_click=rebuild_queue, key="review_build")
    st.stop()

review_tab, queue_tab, history_tab, changes_tab = st.tabs(["Review", "Queue", "History", "Changes per category"])
with review_tab:
    tops = data.category_paths(data.database_url())
    filter_cols = st.columns(3)
    filter_cols[0].selectbox("Current category", ["All", *tops], key="review_filter_current")
    filter_cols[1].selectbox("Suggested category", ["All", *tops], key="review_filter_suggested")
    filter_cols[2].number_input(
        "Label quality at most",
        min_value=0.0,
        max_value=1.0,
        value=None,
        step=0.05,
        key="review_filter_score",
        help="Lower scores are more likely wrong; leave empty for every item",
    )
    if not reviewer():
        st.info("Give your name above to start reviewing: every change records who made it.")
    else:
        current = st.session_state.get("review_current")
        card = review.review_card(engine, current) if current else None
        if card is None or (card.status == review_queue.PENDING and st.session_state.get("review_filters_seen") != queue_filters()):
            next_item()
            current = st.session_state.get("review_current")
            card = review.review_card(engine, current) if current else None
        st.session_state["review_filters_seen"] = queue_filters()
        if card is None:
            st.success("No pending item matches these filters (or other reviewers hold them): the queue is done here.")
        else:
            with st.container(border=True):
                head_col, score_col = st.columns([4, 1])
                head_col.subheader(escape_markdown(card.name), anchor=False)
                score_col.metric(
                    "Label quality", f"{card.score:.4f}", help="cleanlab's self-confidence: the model's probability of the current label"
                )
                if card.status != review_queue.PENDING:
                    st.warning(f"Already reviewed ({card.status}). Undo (U) reopens your last decision.")
                photo_cols = st.columns(max(2, len(card.image_paths)))
                for column, path in zip(photo_cols, card.image_paths):
                    with column:
                        show_photo(path)
                if not card.image_paths:
                    st.caption("No photo")
                st.markdown(
                    f"**£{card.price_pence / 100:,.2f}** · {escape_markdown(card.location)} · source: {card.source}"
                    + (" · flagged by cleanlab" if card.is_issue else "")
                )
                st.text(card.description[:3000] or "(no description)")
                label_col, suggestion_col = st.columns(2)
                label_col.markdown(f"**Current label**  \n{escape_markdown(card.category)}")
                suggestion_col.markdown(
                    "**Model suggests**  \n"
                    + "  \n".join(f"{escape_markdown(label)}: {probability:.1%}" for label, probability in card.top)
                )
                if card.prediction_set:
                    st.caption(escape_markdown("The model was not sure: one of " + ", ".join(card.prediction_set)))
                explanation(
                    resources.classifier,
                    text=f"{card.name}\n{card.description}",
                    photos=lambda: [open_image(photo_path(path)) for path in card.image_paths[:1] if photo_path(path).is_file()],
                    category=card.suggested_label,
                    key="review",
                )
            pending = card.status == review_queue.PENDING
            shown = {"seen_version": card.label_version}
            buttons = st.columns(7)
            buttons[0].button(
                "Keep",
                key="review_keep",
                on_click=act,
                args=("keep",),
                kwargs=shown,
                disabled=not pending,
                shortcut=SHORTCUTS["keep"],
                width="stretch",
            )
            buttons[1].button(
                "Accept",
                key="review_accept",
                on_click=act,
                args=("accept",),
                kwargs=shown,
                type="primary",
                shortcut=SHORTCUTS["accept"],
                disabled=not pending or card.category.split(" / ")[0] == card.suggested_label,
                width="stretch",
            )
            buttons[2].button(
                "Spam",
                key="review_spam",
                on_click=act,
                args=("not_a_product",),
                kwargs=shown,
                disabled=not pending,
                help="Not a product, or spam: kept in the catalogue, left out of training",
                shortcut=SHORTCUTS["spam"],
                width="stretch",
            )
            buttons[3].button(
                "Skip", key="review_skip", on_click=next_item, kwargs={"skip_current": True}, shortcut=SHORTCUTS["skip"], width="stretch"
            )
            buttons[4].button("Previous", key="review_previous", on_click=previous, shortcut=SHORTCUTS["previous"], width="stretch")
            buttons[5].button(
                "Next", key="review_next", on_click=next_item, kwargs={"skip_current": True}, shortcut=SHORTCUTS["next"], width="stretch"
            )
            buttons[6].button("Undo", key="review_undo", on_click=undo, shortcut=SHORTCUTS["undo"], width="stretch")
            with st.expander("Pick another category (L applies it)"):
                chosen = category_picker(key="review_pick", default_top=card.suggested_label)
                st.button(
                    f"Label as {chosen}",
                    key="review_other",
                    on_click=act,
                    args=("other",),
                    kwargs={**shown, "category": chosen},
                    disabled=not pending,
                    shortcut=SHORTCUTS["other"],
                )
            st.caption(
                "Keys: K keep · A accept the suggestion · L apply the picked category · N not a product (spam) · S skip · "
                "← / → previous / next · U undo your last change"
            )
with queue_tab:
    queue = review_queue.queue_frame(engine, filters=queue_filters(), limit=500)
    st.caption(f"Pending items matching the filters, worst label first (at most 500 of {counts['remaining']:,} shown).")
    st.dataframe(queue, hide_index=True, width="stretch", column_config={"score": st.column_config.NumberColumn(format="%.4f")})
    st.button(
        "Score every label again",
        key="review_rebuild",
        on_click=rebuild_queue,
        help="After imports or many fixes: decided items keep their decision; pending ones get new scores",
    )
with history_tab:
    history_cols = st.columns(2)
    by = history_cols[0].text_input("Changed by", key="review_history_by", max_chars=100)
    source = history_cols[1].selectbox("Source", ["All", *LabelSource], key="review_history_source")
    history = label_history.history_frame(engine, changed_by=by.strip() or None, source=None if source == "All" else source)
    st.dataframe(history, hide_index=True, width="stretch")
    st.download_button(
        "Download as CSV", history.to_csv(index=False).encode(), file_name="label_history.csv", mime="text/csv", key="review_history_csv"
    )
with changes_tab:
    st.caption("Labels fixed in review or by hand (undone changes excluded): the next training run learns from these.")
    st.dataframe(label_history.changes_per_category(engine), hide_index=True, width="stretch")
