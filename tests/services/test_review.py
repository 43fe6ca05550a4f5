"""Labelling review: injected label errors rank near the top of the queue; the queue's ranking;
optimistic locking (a stale update refused), claims (one item, one reviewer), undo, export; fixes
feed training; the CLI's JSON; an AppTest reviewing three items."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from cli.main import main
from core.quality.label_issues import catalogue_features, out_of_sample_probabilities, rank_label_issues
from core.settings import PROJECT_ROOT
from db.importer import import_catalogue
from db.queries import training_catalogue
from db.session import make_engine, session_scope
from db.tables import LabelHistory, Product, ReviewItem
from services import label_history, review, review_queue
from tests.helpers import ImportedCatalogue, generated_catalogue, use_home

FLIPPED = 60


def test_injected_label_errors_rank_near_the_top(shared_catalogue: ImportedCatalogue, shared_indexes) -> None:  # type: ignore[no-untyped-def]
    """Flip the labels of 60 random shared products to another category, as cleanlab's own tests
    inject errors: most must rank in the top 5% of 6,082 products, nearly all in the top 10%."""
    with session_scope(shared_catalogue.engine) as session:
        catalogue = training_catalogue(session, media_dir=shared_catalogue.home / "images")
    labels = catalogue.labels
    y = np.array([labels.index(product.label) for product in catalogue.products])
    rng = np.random.default_rng(7)
    flipped = rng.choice(len(y), FLIPPED, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, len(labels), FLIPPED)) % len(labels)
    features = catalogue_features(catalogue, cache_dir=shared_catalogue.home / "cache")
    probabilities = out_of_sample_probabilities(features, noisy, n_classes=len(labels))
    ranked = rank_label_issues(noisy, probabilities)
    # Thresholds leave room for run-to-run drift of multi-threaded training (seen here: 48-52 of 60
    # in the top 5%, 58 in the top 10%, 46-50 flagged).
    found = {share: len({issue.index for issue in ranked[: int(len(y) * share)]} & set(flipped.tolist())) for share in (0.05, 0.10)}
    assert found[0.05] >= 0.75 * FLIPPED and found[0.10] >= 0.9 * FLIPPED, f"injected errors found in the top 5% / 10%: {found}"
    suggested = {issue.index: issue.suggested for issue in ranked}
    assert np.mean([suggested[row] == y[row] for row in flipped]) >= 0.7  # and the suggestion is mostly the true label
    flagged = {issue.index for issue in ranked if issue.is_issue}
    assert len(flagged & set(flipped.tolist())) >= 0.7 * FLIPPED


def test_ranking_puts_the_least_confident_label_first() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    ranked = rank_label_issues([0, 0, 0, 1], probabilities)
    assert [issue.index for issue in ranked] == [1, 2, 0, 3]
    assert ranked[0].suggested == 1 and ranked[0].score == pytest.approx(0.2)


@pytest.fixture
def small(tmp_path: Path, catalogue_url: str):  # type: ignore[no-untyped-def]
    """A generated catalogue of 24 products with its review queue built, on each backend."""
    engine = make_engine(catalogue_url)
    import_catalogue(generated_catalogue(tmp_path / "source", per_class=8), engine=engine, media_dir=tmp_path / "images")
    queued = review_queue.refresh_queue(engine, cache_dir=tmp_path / "cache", media_dir=tmp_path / "images")
    assert queued == 24
    return engine, tmp_path


def _version(engine, product_id: str) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return session.scalar(select(Product.label_version).where(Product.id == product_id))  # type: ignore[return-value]


def _history_count(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(LabelHistory)) or 0


def test_a_stale_update_is_refused(small) -> None:  # type: ignore[no-untyped-def]
    engine, _ = small
    product_id = review_queue.queue_frame(engine)["product_id"].iloc[0]
    seen = _version(engine, product_id)  # both reviewers opened the item at this version
    review.decide(engine, product_id, action="relabel", reviewer="ana", seen_version=seen, new_category="Appliances")
    before = _history_count(engine)
    with pytest.raises(review.StaleLabelError):
        review.decide(engine, product_id, action="relabel", reviewer="ben", seen_version=seen, new_category="Baby & Kids Stuff")
    # The version lock on its own: with the queue entry reopened, an update against the old version still never lands.
    with session_scope(engine) as session:
        session.get_one(ReviewItem, product_id).status = review_queue.PENDING
    with pytest.raises(review.StaleLabelError, match="changed by someone else"):
        review.decide(engine, product_id, action="keep", reviewer="ben", seen_version=seen)
    assert _history_count(engine) == before
    with session_scope(engine) as session:
        assert session.scalar(select(Product).where(Product.id == product_id)).category.path == "Appliances"  # type: ignore[union-attr]


def test_one_item_is_never_handed_to_two_reviewers(small) -> None:  # type: ignore[no-untyped-def]
    engine, _ = small
    first = review.claim_next(engine, "ana")
    second = review.claim_next(engine, "ben")
    assert first and second and first != second
    assert review.claim_next(engine, "ana") == first  # the same reviewer keeps their item
    with pytest.raises(review.StaleLabelError, match="being reviewed by ana"):
        review.decide(engine, first, action="keep", reviewer="ben", seen_version=_version(engine, first))
    review.release(engine, "ana")
    assert review.claim_next(engine, "ben", skip=[second]) == first


def test_undo_restores_the_label_and_records_itself(small) -> None:  # type: ignore[no-untyped-def]
    engine, _ = small
    product_id = review.claim_next(engine, "ana")
    assert product_id
    with session_scope(engine) as session:
        old_path = session.scalar(select(Product).where(Product.id == product_id)).category.path  # type: ignore[union-attr]
    review.decide(
        engine, product_id, action="relabel", reviewer="ana", seen_version=_version(engine, product_id), new_category="Appliances"
    )
    assert review_queue.progress(engine)["relabelled"] == 1
    assert review.undo_last(engine, "ana") == product_id
    with session_scope(engine) as session:
        product = session.scalar(select(Product).where(Product.id == product_id))
        assert product is not None and product.category.path == old_path
        actions = session.scalars(select(LabelHistory.action).where(LabelHistory.product_id == product_id).order_by(LabelHistory.id)).all()
        assert actions == ["relabel", "undo"]
        assert session.get_one(ReviewItem, product_id).status == review_queue.PENDING
    assert review.undo_last(engine, "ana") is None  # nothing left to undo

    review.decide(engine, product_id, action="not_a_product", reviewer="ana", seen_version=_version(engine, product_id))
    with session_scope(engine) as session:
        session.execute(Product.__table__.update().where(Product.id == product_id).values(label_version=Product.label_version + 1))
    with pytest.raises(review.StaleLabelError, match="changed again"):
        review.undo_last(engine, "ana")


def test_fixes_feed_training_and_spam_is_left_out(small) -> None:  # type: ignore[no-untyped-def]
    engine, home = small
    queue = review_queue.queue_frame(engine)
    relabelled, spam = queue["product_id"].iloc[0], queue["product_id"].iloc[1]
    review.decide(
        engine, relabelled, action="relabel", reviewer="ana", seen_version=_version(engine, relabelled), new_category="Appliances"
    )
    review.decide(engine, spam, action="not_a_product", reviewer="ana", seen_version=_version(engine, spam))
    with session_scope(engine) as session:
        catalogue = training_catalogue(session, media_dir=home / "images")
    by_id = {product.id: product for product in catalogue.products}
    assert by_id[relabelled].label == "Appliances" and spam not in by_id and len(by_id) == 23
    assert all(image.product_id != spam for image in catalogue.images)
    changes = label_history.changes_per_category(engine)
    assert changes.set_index("category").loc["Appliances", "changed to"] == 1
    # A new scoring keeps the decided items' decisions and queues the rest again.
    assert (
        review_queue.refresh_queue(engine, cache_dir=home / "cache", media_dir=home / "images") == 22
    )  # 23 left in training, minus the relabelled one
    assert review_queue.queue_counts_per_category(engine)["in the queue"].sum() == 22
    assert review_queue.progress(engine) == {"reviewed": 2, "remaining": 22, "kept": 0, "relabelled": 1, "not_a_product": 1}


def test_history_exports_as_csv(small) -> None:  # type: ignore[no-untyped-def]
    engine, _ = small
    product_id = review_queue.queue_frame(engine)["product_id"].iloc[0]
    review.decide(
        engine,
        product_id,
        action="relabel",
        reviewer="ana, the reviewer",
        seen_version=_version(engine, product_id),
        new_category="Appliances",
        reason='said "fridge"\nin the text',
    )
    frame = label_history.history_frame(engine, source="review")
    back = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    assert back.columns.tolist() == label_history.HISTORY_COLUMNS
    assert back.loc[0, "changed_by"] == "ana, the reviewer" and back.loc[0, "reason"] == 'said "fridge"\nin the text'
    assert back.loc[0, "new_category"] == "Appliances" and back.loc[0, "action"] == "relabel"


def test_cli_review_queue_json(small, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    engine, home = small
    use_home(monkeypatch, home, database_url=engine.url.render_as_string(hide_password=False))
    assert main(["review-queue", "--limit", "5", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert len(items) == 5 and all(set(item) == {"product_id", "name", "current", "suggested", "score", "prediction_set"} for item in items)
    assert [item["score"] for item in items] == sorted(item["score"] for item in items)
    assert main(["review-queue", "--limit", "3"]) == 0
    assert "3 items, worst label first" in capsys.readouterr().out


def test_review_page_reviews_three_items(small, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    engine, home = small
    use_home(monkeypatch, home, database_url=engine.url.render_as_string(hide_password=False))
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/review.py").run()
    assert not app.exception and "Give your name" in app.info[0].value
    app.text_input(key="reviewer_name").input("ana").run()
    app.toggle(key="review_why").set_value(True).run()  # the words and the photo behind the suggestion
    assert not app.exception and any(markdown.value.startswith("**Words**") for markdown in app.markdown)
    assert any("Grad-CAM" in str(image.proto) for image in app.get("image"))
    app.toggle(key="review_why").set_value(False).run()
    worst = review_queue.queue_frame(engine)["product_id"].tolist()
    names = []
    for key in ("review_keep", "review_accept", "review_spam"):
        names.append(app.subheader[0].value)
        button = app.button(key=key)
        if button.disabled:  # the suggestion equals the current label: pick another category by hand instead
            app.selectbox(key="review_pick_top").set_value("Appliances").run()
            key, button = "review_other", app.button(key="review_other")
        button.click().run()
        assert not app.exception, [error.value for error in app.exception]
        assert app.success, [error.value for error in app.error]
    assert len(set(names)) == 3
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Reviewed"] == "3" and metrics["Remaining"] == "21"
    with session_scope(engine) as session:
        decided = dict(
            session.execute(select(ReviewItem.product_id, ReviewItem.status).where(ReviewItem.status != review_queue.PENDING)).all()
        )
        assert set(decided) == set(worst[:3])
        history = session.scalars(select(LabelHistory).where(LabelHistory.source == "review")).all()
        assert {row.changed_by for row in history} == {"ana"} and len(history) == 2  # keep changes no label
        assert sorted(row.action for row in history) == ["not_a_product", "relabel"]
    app.button(key="review_undo").click().run()
    assert not app.exception and {metric.label: metric.value for metric in app.metric}["Reviewed"] == "2"
    history_table = next(frame.value for frame in app.dataframe if "changed_by" in frame.value.columns)
    assert history_table["action"].tolist()[0] == "undo"


def test_a_label_fixed_from_the_detail_view_is_recorded_and_a_stale_fix_refused(small, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    engine, home = small
    use_home(monkeypatch, home, database_url=engine.url.render_as_string(hide_password=False))
    product_id = review_queue.queue_frame(engine)["product_id"].tolist()[0]
    with session_scope(engine) as session:
        old = session.scalar(select(Product).where(Product.id == product_id)).category.path.split(" / ")[0]  # type: ignore[union-attr]
    target = next(label for label in ("Appliances", "Baby & Kids Stuff") if label != old)

    def detail_view() -> AppTest:
        app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=120)
        app.query_params["product"] = product_id
        app.run()
        app.selectbox(key="label_fix_top").set_value(target)
        app.text_input(key="reviewer_name").input("ben").run()
        assert not app.exception
        return app

    first, second = detail_view(), detail_view()  # two people with the same product open
    first.button(key="label_fix_save").click().run()
    assert not first.exception and "Category changed to" in first.success[0].value
    second.button(key="label_fix_save").click().run()
    assert not second.exception and "changed by someone else" in second.error[0].value
    with session_scope(engine) as session:
        product = session.scalar(select(Product).where(Product.id == product_id))
        assert product.category.path == target and product.label_version == 2  # type: ignore[union-attr]
        rows = session.scalars(select(LabelHistory).where(LabelHistory.product_id == product_id)).all()
        assert [(row.source, row.changed_by, row.action) for row in rows] == [("manual", "ben", "relabel")]
        assert session.get(ReviewItem, product_id).status == "relabelled"  # type: ignore[union-attr]
    changes = label_history.changes_per_category(engine).set_index("category")
    assert changes.loc[target, "changed to"] == 1  # a fix by hand counts with review's fixes
