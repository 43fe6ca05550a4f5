"""AppTest for every page: no exception and real content, on an empty and on the full catalogue."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.data.markdown import escape_markdown
from core.settings import PROJECT_ROOT
from tests.helpers import ImportedCatalogue, generated_photo, image_row, photo, product_row, use_home, write_catalogue

APP = str(PROJECT_ROOT / "streamlit_app.py")
PAGES = [
    "pages/search.py",
    "pages/browse.py",
    "pages/dashboard.py",
    "pages/admin.py",
    "pages/classify.py",
    "pages/evaluation.py",
    "pages/training.py",
    "pages/review.py",
]
NEEDS_CATALOGUE = [
    "pages/search.py",
    "pages/browse.py",
    "pages/dashboard.py",
    "pages/evaluation.py",
    "pages/training.py",
    "pages/review.py",
]


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    if page != "pages/search.py":
        app.switch_page(page).run()
    assert not app.exception, [error.value for error in app.exception]
    return app


@pytest.fixture
def shared_app_env(shared_catalogue: ImportedCatalogue, shared_indexes, monkeypatch: pytest.MonkeyPatch) -> ImportedCatalogue:  # type: ignore[no-untyped-def]
    """The app on the full shared catalogue, its embeddings already in the home's cache."""
    use_home(monkeypatch, shared_catalogue.home, database_url=shared_catalogue.database_url)
    return shared_catalogue


@pytest.mark.parametrize("page", NEEDS_CATALOGUE)
def test_empty_catalogue_explains_how_to_import(app_home: Path, page: str) -> None:
    app = open_page(page)
    notice = " ".join(info.value for info in app.info)
    assert "catalogue is empty" in notice and "python -m core import" in notice


def test_import_page_imports_a_folder(app_home: Path, tmp_path: Path) -> None:
    source = write_catalogue(
        tmp_path / "source", [product_row("a"), product_row("b", price="n/a")], [image_row("ia", "a")], photos={"ia": photo()}
    )
    app = open_page("pages/admin.py")
    app.text_input[0].set_value(str(source))
    app.button[0].click().run()
    assert not app.exception
    assert "Imported 1 products and 1 photos" in app.success[0].value
    assert "1 rows were skipped" in app.warning[0].value
    assert app.dataframe[0].value["reason"].str.startswith("bad price").all()

    browse = open_page("pages/browse.py")
    assert "**Item a**" in [markdown.value for markdown in browse.markdown]


def test_import_page_reports_a_bad_folder(app_home: Path) -> None:
    app = open_page("pages/admin.py")
    app.text_input[0].set_value(str(app_home / "no such folder"))
    app.button[0].click().run()
    assert not app.exception
    assert "Nothing was imported" in app.error[0].value


def test_browse_shows_products_and_a_detail_view(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/browse.py")
    assert "6,082 products" in app.caption[0].value
    names = [markdown.value for markdown in app.markdown if markdown.value.startswith("**")]
    assert len(names) == 24
    details = [button for button in app.button if button.key and button.key.startswith("browse_card_")]
    details[0].click().run()
    assert not app.exception
    assert app.subheader[0].value  # the product's name
    assert app.text[0].value  # its full description
    assert app.query_params["product"]

    app.button(key="detail_back").click().run()
    app.selectbox(key="browse_top").set_value("Appliances").run()
    assert "443 products · page 1 of 19" in app.caption[0].value
    app.button(key="browse_next").click().run()
    assert "page 2 of 19" in app.caption[0].value


def test_search_finds_phones(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input("iphone").run()
    assert not app.exception
    assert any(caption.value.startswith("24 results in") for caption in app.caption)
    categories = [caption.value for caption in app.caption if "Telecoms" in caption.value]
    assert len(categories) >= 18


def test_search_with_hostile_text_shows_no_error(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input('"NEAR( <script>alert(1)</script> AND *').run()
    assert not app.exception and not app.error


def test_dashboard_shows_figures(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/dashboard.py")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Products"] == "6,082" and metrics["Photos"] == "10,732"
    assert metrics["Products with no photo"] == "83"
    assert len(app.get("plotly_chart")) == 6  # five catalogue figures and the model health bar
    assert len(app.dataframe[0].value) == 83


# ----- model pages


def _listing(marketplace_dir: Path, words: str, category: str) -> tuple[str, str, bytes]:
    """(title, description, first photo's bytes) of a shared listing whose name holds `words`."""
    products = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n")
    images = pd.read_csv(marketplace_dir / "Images.csv", lineterminator="\n")
    matches = products[products["product_name"].str.lower().str.contains(words) & products["category"].str.startswith(category)]
    for row in matches.itertuples():
        photo_ids = images.loc[images["product_id"] == row.id, "id"].tolist()
        if photo_ids:
            return (
                row.product_name.split("|")[0],
                str(row.product_description),
                (marketplace_dir / "images" / f"{photo_ids[0]}.jpg").read_bytes(),
            )
    raise AssertionError(f"no listing for {words!r}")


def test_classify_a_shared_photo_and_description(shared_app_env: ImportedCatalogue, marketplace_dir: Path) -> None:
    title, description, photo_bytes = _listing(marketplace_dir, "ps4", "Video Games & Consoles")
    app = open_page("pages/classify.py")
    assert "Upload a photo" in app.info[0].value  # an empty form explains itself
    app.file_uploader(key="classify_photos").set_value([("ps4.jpg", photo_bytes, "image/jpeg"), ("notes.jpg", b"plain text", "image/jpeg")])
    app.text_input(key="classify_title").input(title)
    app.text_area(key="classify_description").input(description).run()
    assert not app.exception
    assert [error.value for error in app.error] == [
        "Photo not used: " + escape_markdown("notes.jpg: not a readable image (unknown or unsupported format)")
    ]
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Predicted category"] == "Video Games & Consoles"
    assert metrics["Suggested price"].startswith("£")
    assert any("**combined** model" in markdown.value for markdown in app.markdown)
    verdicts = [alert.value for alert in (*app.success, *app.warning)]  # filed automatically, or a short list
    assert len(verdicts) == 1
    assert verdicts[0].startswith(escape_markdown("Video Games & Consoles (confident)")) or "Not sure: one of" in verdicts[0]
    assert len(app.get("plotly_chart")) == 2  # top-5 and each model side by side
    app.toggle(key="classify_why").set_value(True).run()  # why: the words and where the image model looked
    assert not app.exception
    words = next(markdown.value for markdown in app.markdown if markdown.value.startswith("**Words**"))
    assert ":green-background[" in words and any("Grad-CAM" in str(image.proto) for image in app.get("image"))
    similar = [button for button in app.button if button.key and button.key.startswith("classify_similar_")]
    assert len(similar) == 8

    app.text_input(key="classify_title").input("").run()
    app.text_area(key="classify_description").input("").run()
    assert {metric.label: metric.value for metric in app.metric}["Predicted category"]  # the photo alone still answers
    assert any("**image** model" in markdown.value for markdown in app.markdown)


def test_classify_then_add_to_the_catalogue(app_home: Path, tmp_path: Path) -> None:
    from db.importer import import_catalogue
    from db.session import make_engine, session_scope
    from db.tables import LabelHistory, Product
    from tests.helpers import generated_catalogue

    engine = make_engine(f"sqlite:///{app_home / 'catalogue.db'}")
    import_catalogue(generated_catalogue(tmp_path / "source", per_class=8), engine=engine, media_dir=app_home / "images")
    app = open_page("pages/classify.py")
    photo = io.BytesIO()
    generated_photo((30, 160, 40), "ellipse", random.Random(1)).save(photo, format="PNG")
    app.file_uploader(key="classify_photos").set_value(("bike.png", photo.getvalue(), "image/png"))
    app.text_input(key="classify_title").input("Mountain bike, 21 gears").run()
    assert not app.exception and {metric.label for metric in app.metric} >= {"Predicted category", "Suggested price"}
    app.selectbox(key="classify_category_top").set_value("Sports, Leisure & Travel").run()
    app.text_input(key="classify_location").input("Leeds")  # form values travel with the submit
    app.text_input(key="classify_added_by").input("ana")
    app.button(key="FormSubmitter:classify_add-Add to catalogue").click().run()
    assert not app.exception, [error.value for error in app.exception]
    assert any(success.value.startswith("Added as product") for success in app.success)
    with session_scope(engine) as session:
        product = session.scalars(select(Product).where(Product.source == "upload")).one()
        assert product.name == "Mountain bike, 21 gears" and product.category.path == "Sports, Leisure & Travel"
        assert len(product.images) == 1 and product.location == "Leeds"
        history = session.scalars(select(LabelHistory).where(LabelHistory.product_id == product.id)).one()
        assert history.source == "upload" and history.changed_by == "ana" and 0 <= history.confidence <= 1


@pytest.mark.parametrize(("mode", "query"), [("semantic", "a smartphone to make calls"), ("hybrid", "iphone 12")])
def test_search_by_meaning_and_hybrid(shared_app_env: ImportedCatalogue, mode: str, query: str) -> None:
    app = open_page("pages/search.py")
    app.get("segmented_control")[0].set_value(mode).run()
    app.text_input(key="search_query").input(query).run()
    assert not app.exception
    assert any(caption.value.startswith("24 results in") and "embedded" in caption.value for caption in app.caption)
    phones = [caption.value for caption in app.caption if caption.value.startswith("Phones")]
    assert len(phones) >= 18
    reason = "meaning similarity " if mode == "semantic" else "fused "
    assert sum(caption.value.startswith(reason) for caption in app.caption) == 24


def test_search_by_photo(shared_app_env: ImportedCatalogue, marketplace_dir: Path) -> None:
    _, _, photo_bytes = _listing(marketplace_dir, "sofa", "Home & Garden")
    app = open_page("pages/search.py")
    app.get("segmented_control")[0].set_value("photo").run()
    app.file_uploader(key="search_photo").set_value(("sofa.jpg", photo_bytes, "image/jpeg")).run()
    assert not app.exception
    assert sum(caption.value.startswith("photo similarity ") for caption in app.caption) == 24
    assert sum(caption.value.startswith("Home") for caption in app.caption) >= 12
    app.file_uploader(key="search_photo").set_value(("broken.jpg", photo_bytes[:100], "image/jpeg")).run()
    assert not app.exception and app.error[0].value.startswith("Photo not used: " + escape_markdown("broken.jpg"))


def test_evaluation_shows_a_matrix_and_a_cell_s_items(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/evaluation.py")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Items"] == "1,217" and metrics["Accuracy"].endswith("%")
    charts = app.get("plotly_chart")
    assert charts and "Confusion matrix" in charts[0].proto.spec
    ece = float(metrics["Calibration error (ECE)"])  # the Calibration tab: before and after, and the decisions
    assert 0 < ece < 0.1 and metrics["Filed automatically"].endswith("%") and "hold it" in metrics["Prediction sets at 90%"]
    assert any("before calibration" in chart.proto.spec and "calibrated" in chart.proto.spec for chart in charts)
    floor = next(caption.value for caption in app.caption if "by chance alone" in caption.value)
    assert "On 1,217 items a perfectly calibrated model would show an ECE of about 0.0" in floor
    app.selectbox(key="eval_true").set_value("Other Goods")
    app.selectbox(key="eval_predicted").set_value("Home & Garden").run()
    assert not app.exception
    heading = next(markdown.value for markdown in app.markdown if "items of Other Goods" in markdown.value)
    count = int(heading.strip("*").split()[0])
    assert count > 0
    confidences = [float(caption.value.split("confidence ")[1].split("%")[0]) for caption in app.caption if "confidence" in caption.value]
    assert len(confidences) == min(count, 30) and confidences == sorted(confidences, reverse=True)
    from db.session import session_scope
    from db.tables import ReviewItem
    from services import review_queue

    app.button(key="eval_send_review").click().run()
    assert not app.exception and "added to the review queue" in app.success[0].value
    queued = review_queue.queue_frame(shared_app_env.engine)
    assert len(queued) == int(app.success[0].value.split()[0]) > 0 and set(queued["source"]) == {"evaluation"}
    assert (queued["suggested"] == "Home & Garden").all() and queued["current"].str.startswith("Other Goods").all()
    with session_scope(shared_app_env.engine) as session:  # leave the shared catalogue's queue empty for the other tests
        for product_id in queued["product_id"]:
            session.delete(session.get_one(ReviewItem, product_id))
    app.selectbox(key="eval_source").set_value(
        next(option for option in app.selectbox(key="eval_source").options if "image" in option)
    ).run()
    assert not app.exception and {metric.label: metric.value for metric in app.metric}["Items"] == "2,153"


@pytest.fixture
def recorded_run(shared_app_env: ImportedCatalogue) -> int:
    """A finished text run recorded in the shared catalogue's DB through the runs API."""
    from core.training.records import ItemPrediction
    from db import runs

    labels = ["Appliances", "Phones, Mobile Phones & Telecoms"]
    run_id = runs.create_run(
        shared_app_env.engine,
        model_kind="text",
        encoder_ids={"text_encoder": "all-minilm-l6-v2"},
        hyperparameters={"epochs": 3, "lr": 0.001, "optimizer": "adam"},
        split_seed=42,
        labels=labels,
        data_fingerprint="recorded",
        split={},
    )
    for epoch, (loss, accuracy) in enumerate([(1.2, 0.5), (0.8, 0.7), (0.6, 0.75)], start=1):
        runs.record_epoch(
            shared_app_env.engine,
            run_id,
            epoch=epoch,
            train_loss=loss,
            train_accuracy=accuracy,
            val_loss=loss + 0.1,
            val_accuracy=accuracy - 0.05,
            learning_rate=0.001,
            seconds=1.0,
        )
    runs.record_best(shared_app_env.engine, run_id, epoch=3, val_accuracy=0.7, checkpoint_path="/nowhere/run.pt")
    predictions = [
        ItemPrediction(
            item_id=f"x{index}", product_id=f"x{index}", part="test", true_label=index % 2, predicted_label=0, probabilities=[0.8, 0.2]
        )
        for index in range(4)
    ]
    runs.finish_run(
        shared_app_env.engine, run_id, status="finished", test_metrics={"accuracy": 0.5, "macro_f1": 0.33}, predictions=predictions
    )
    return run_id


def test_training_lists_runs_with_curves(recorded_run: int) -> None:
    app = open_page("pages/training.py")
    table = app.dataframe[0].value
    row = table[table["run"] == recorded_run].iloc[0]
    assert row["model"] == "text" and row["status"] == "finished" and row["epochs"] == 3 and row["best val accuracy"] == pytest.approx(0.7)
    assert "lr=0.001" in row["hyper-parameters"]
    app.multiselect(key="training_plot_runs").set_value([recorded_run]).run()
    curves = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert curves["layout"]["title"]["text"] == "Loss per epoch"
    assert [trace["name"] for trace in curves["data"]] == [f"run {recorded_run} · train", f"run {recorded_run} · validation"]
    app.radio(key="training_metric").set_value("accuracy").run()
    assert json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"] == "Accuracy per epoch"
    assert app.selectbox(key="training_kind").value == "image"
    app.selectbox(key="training_activate_run").set_value(recorded_run)
    app.button(key="training_activate").click().run()
    assert not app.exception and "not a finished run with its checkpoint" in app.error[0].value
    app.selectbox(key="training_kind").set_value("combined").run()
    assert not app.exception and [field.value for field in app.number_input if field.label == "Text fold models"] == [0]


def test_evaluation_of_a_recorded_run_and_comparison(recorded_run: int) -> None:
    app = open_page("pages/evaluation.py")
    option = next(option for option in app.selectbox(key="eval_source").options if option.startswith(f"Run {recorded_run} "))
    app.selectbox(key="eval_source").set_value(option).run()
    assert not app.exception
    assert {metric.label: metric.value for metric in app.metric}["Items"] == "4"
    assert {metric.label: metric.value for metric in app.metric}["Accuracy"] == "50.0%"
    compared = [frame.value for frame in app.dataframe if "metric" in frame.value.columns]
    assert compared and compared[0]["metric"].tolist() == ["accuracy", "top3_accuracy", "macro_f1", "n"]


def test_dashboard_shows_model_health(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/dashboard.py")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Held-out products"] == "1,217" and metrics["Combined model accuracy"].endswith("%")
    filed, accuracy = float(metrics["Filed automatically"].rstrip("%")), float(metrics["Accuracy when filed"].rstrip("%"))
    assert 40 < filed < 90 and accuracy > float(metrics["Combined model accuracy"].rstrip("%"))
    assert any("accuracy per category" in chart.proto.spec for chart in app.get("plotly_chart"))


# ----- no page waits on a whole-catalogue job


def _wait_for_background_jobs(prefix: str) -> None:
    from core.runtime import background

    for job in background.jobs():
        if job.key.startswith(prefix):
            finished = background.wait(job.key, timeout=300)
            assert finished is not None and not finished.running and finished.error is None, finished


def test_a_fresh_catalogue_searches_by_keyword_before_any_embedding(app_home: Path, tmp_path: Path) -> None:
    from db.importer import import_catalogue
    from db.session import make_engine
    from tests.helpers import generated_catalogue

    import_catalogue(
        generated_catalogue(tmp_path / "source", per_class=6),
        engine=make_engine(f"sqlite:///{app_home / 'catalogue.db'}"),
        media_dir=app_home / "images",
    )
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input("pram").run()
    assert not app.exception
    found = [caption.value for caption in app.caption if " results in " in caption.value]
    assert found and not found[0].startswith("0 ")
    assert not list((app_home / "cache").glob("*.npy"))  # keyword search embedded nothing

    app.get("segmented_control")[0].set_value("semantic").run()
    assert not app.exception
    assert "Search by meaning when the background job is done" in app.get("progress")[0].proto.text
    assert any("Keyword search works now" in caption.value for caption in app.caption)
    _wait_for_background_jobs("embeddings:")
    app.run()
    assert not app.exception and not app.get("progress")
    assert any(caption.value.startswith("18 results in") and "embedded" in caption.value for caption in app.caption)


def test_evaluation_of_a_changed_catalogue_runs_in_the_background(app_home: Path, tmp_path: Path) -> None:
    from db.importer import import_catalogue
    from db.session import make_engine
    from tests.helpers import generated_catalogue

    import_catalogue(
        generated_catalogue(tmp_path / "source", per_class=10),
        engine=make_engine(f"sqlite:///{app_home / 'catalogue.db'}"),
        media_dir=app_home / "images",
    )
    app = open_page("pages/evaluation.py")
    assert "The active models' figures when the background job is done" in app.get("progress")[0].proto.text
    assert not app.metric
    _wait_for_background_jobs("held-out:")
    app.run()
    assert not app.exception and not app.get("progress")
    assert {metric.label for metric in app.metric} >= {"Accuracy", "Macro-F1", "Items"}
    assert any("some of its products may have been on the training side" in caption.value for caption in app.caption)
