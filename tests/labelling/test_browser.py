"""A person in headless Chromium: the labelling page end to end (class, entity spans, yes/no, undo, kill -9)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.labelling.conftest import Server, close_browser, new_browser, write_queries
from trinity_lightning.rounds import FileOracle
from trinity_lightning.rounds.web import crowd_table

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
ONE = [[0, 9, 9, 0], [0, 0, 9, 0], [0, 0, 9, 0], [0, 9, 9, 9]]
SENTENCE = ["Angela", "Merkel", "visited", "New", "York", "on", "Monday", "."]


def _wait(driver, condition, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def _item(driver) -> str:  # type: ignore[no-untyped-def]
    return driver.execute_script("return String(window.trinity.current)")


def _keys(driver, *keys: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def _answers(directory: Path, round: int = 1) -> list[dict]:
    path = directory / f"round_{round:04d}.answers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _sign_in(driver, url: str, name: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_element(By.ID, "name-form").is_displayed())
    field = driver.find_element(By.ID, "name-input")
    field.clear()
    field.send_keys(name)
    driver.find_element(By.ID, "name-ok").click()
    _wait(
        driver, lambda d: d.find_element(By.ID, "task").is_displayed() or d.find_element(By.ID, "done").is_displayed()
    )


def _shot(driver, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """Screenshot of the page; copied into docs/img when TRINITY_UPDATE_SCREENSHOTS=1."""
    path = tmp_path / f"label_{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    if os.environ.get("TRINITY_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, DOCS_IMG / path.name)


def test_person_labels_undoes_survives_kill9_and_campaign_resumes(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    write_queries(
        tmp_path,
        1,
        [
            {"index": 10, "kind": "class", "example": {"features": ONE},
             "choices": ["zero", "one", "two"]},
            {"index": 20, "kind": "tags", "example": {"tokens": SENTENCE}, "choices": TAGS},
            {"index": 30, "kind": "yesno", "question": "Is this a dog?", "question_id": 4,
             "example": {"text": "a photo of a beagle", "path": ["entity", "animal", "carnivore"],
                         "candidates": ["dog", "cat", "wolf"]}},
            {"index": 40, "kind": "class", "example": {"text": "the last one"}, "choices": ["zero", "one", "two"]},
        ],
    )  # fmt: skip
    server = Server(tmp_path).start()
    serve_dir.append(server)
    driver = browser
    _sign_in(driver, server.url, "ann")
    assert _item(driver) == "10"
    assert "pool index 10" in driver.find_element(By.ID, "item-id").text
    assert driver.find_elements(By.CSS_SELECTOR, "#example canvas")  # the features drawn as a picture
    _shot(driver, tmp_path, "class")
    _keys(driver, "2")  # number key: the second class
    _wait(driver, lambda d: _item(d) == "20")

    tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    assert [t.text for t in tokens] == SENTENCE
    ActionChains(driver).click_and_hold(tokens[0]).move_to_element(tokens[1]).release().perform()  # mouse: a span
    _keys(driver, "1")  # PER
    # keyboard: cursor to "New", shift+right over "York", LOC
    _keys(driver, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    _keys(driver, "2")
    entities = driver.execute_script("return window.trinity.tag.spans")
    assert entities == [{"start": 0, "end": 1, "type": "PER"}, {"start": 3, "end": 4, "type": "LOC"}]
    _shot(driver, tmp_path, "tags")
    _keys(driver, Keys.ENTER)
    _wait(driver, lambda d: _item(d) == "30")

    assert driver.find_element(By.ID, "question").text == "Is this a dog?"
    assert driver.find_element(By.CSS_SELECTOR, "#question em").text == "dog"
    assert "entity › animal › carnivore" in driver.find_element(By.ID, "path").text
    assert "candidates left (3): dog, cat, wolf" in driver.find_element(By.ID, "candidates").text
    _shot(driver, tmp_path, "yesno")
    _keys(driver, "y")
    _wait(driver, lambda d: _item(d) == "40")
    # undo: the last answer comes back, and the person changes it
    _keys(driver, "u")
    _wait(driver, lambda d: _item(d) == "30")
    assert "chosen" in driver.find_element(By.CSS_SELECTOR, '#choices button[data-label="yes"]').get_attribute("class")
    _keys(driver, "n")
    _wait(driver, lambda d: _item(d) == "40")

    server.kill9()
    written = _answers(tmp_path)
    assert [(a["index"], a["label"]) for a in written] == [
        (10, "one"),
        (20, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]),
        (30, "yes"),
        (30, "no"),
    ]
    assert all(a["worker"] == "ann" for a in written) and written[-1]["question_id"] == 4
    pending = FileOracle(str(tmp_path), wait=False)
    assert pending.collect(1) is None  # item 40 is still open: the campaign would wait

    serve_dir.append(Server(tmp_path, server.port).start())  # same address: the open tab just reloads
    driver.refresh()
    _wait(driver, lambda d: _item(d) == "40")  # where the person stopped, no name asked again
    history = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#history-list a")]
    assert history == ["#30: no", "#20: PER, LOC", "#10: one"]
    # going back to any answered item shows its answer
    driver.find_element(By.CSS_SELECTOR, '#history-list a[data-index="20"]').click()
    _wait(driver, lambda d: _item(d) == "20")
    assert driver.execute_script("return window.trinity.tag.spans.length") == 2
    _keys(driver, "s")  # skip keeps the answer
    _wait(driver, lambda d: _item(d) == "40")
    _keys(driver, "3")
    _wait(driver, lambda d: d.find_element(By.ID, "done").is_displayed())

    answers = FileOracle(str(tmp_path), wait=False).collect(1)
    assert answers is not None
    assert answers.indices == [10, 20, 30, 40]
    assert answers.labels == [1, [1, 2, 0, 3, 4, 0, 0, 0], False, 2]
    assert answers.workers == ["ann"] * 4


def test_markup_tokens_are_shown_verbatim(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.by import By

    markup = ["<script>alert(1)</script>", "[/]", "{{x}}", "[bold]", "<b>b</b>", "&amp;", "<img src=x onerror=f()>"]
    tokens = markup * 6  # 42 tokens: wraps over several lines
    write_queries(tmp_path, 1, [{"index": 0, "kind": "tags", "example": {"tokens": tokens}, "choices": TAGS}])
    server = Server(tmp_path).start()
    serve_dir.append(server)
    _sign_in(browser, server.url, "ann")
    shown = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")]
    assert shown == tokens
    wrapped = "return [document.getElementById('tokens').scrollWidth, document.getElementById('tokens').clientWidth]"
    scroll, width = browser.execute_script(wrapped)
    assert scroll <= width  # a long sentence wraps instead of running off the page
    assert browser.execute_script("return document.querySelectorAll('#tokens *:not(.tok)').length") == 0
    assert browser.execute_script("return document.querySelectorAll('main script, main img, main b').length") == 0
    _shot(browser, tmp_path, "markup")
    from selenium.webdriver.common.keys import Keys

    _keys(browser, Keys.ENTER)  # no entity: all O
    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())
    assert _answers(tmp_path)[0]["label"] == ["O"] * len(tokens)


def test_two_annotators_one_round_read_by_dawid_skene(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.by import By

    from trinity_lightning.crowd import DawidSkene

    classes = ["cat", "dog"]
    write_queries(
        tmp_path,
        1,
        [{"index": i, "kind": "class", "example": {"text": f"item {i}"}, "choices": classes} for i in range(4)],
    )
    server = Server(tmp_path, None, "--answers-per-item", "2").start()
    serve_dir.append(server)
    second = new_browser()
    try:
        _sign_in(browser, server.url, "ann")
        _sign_in(second, server.url, "bo")
        for i in range(4):  # interleaved: the two never overwrite each other
            for driver, key in ((browser, "1" if i < 3 else "2"), (second, "1" if i % 2 == 0 else "2")):
                _wait(driver, lambda d, i=i: _item(d) == str(i))
                _keys(driver, key)
        for driver in (browser, second):
            _wait(driver, lambda d: d.find_element(By.ID, "done").is_displayed())
        assert "4 of 4 items complete (2 people each)" in second.find_element(By.ID, "progress-text").text
    finally:
        close_browser(second)
    table = crowd_table(tmp_path / "round_0001.queries.jsonl")
    assert sorted(table.itertuples(index=False, name=None)) == sorted(
        [(0, "ann", "cat"), (1, "ann", "cat"), (2, "ann", "cat"), (3, "ann", "dog"),
         (0, "bo", "cat"), (1, "bo", "dog"), (2, "bo", "cat"), (3, "bo", "dog")]
    )  # fmt: skip
    model = DawidSkene().fit(table)
    assert model.table_.num_workers == 2 and model.table_.num_items == 4
    frame = model.to_frame()
    assert dict(zip(frame["item"], frame["label"]))[3] == "dog"
    assert dict(zip(frame["item"], frame["label"]))[0] == "cat"


def test_a_new_round_is_announced_while_items_are_open(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.by import By

    items = [{"index": i, "kind": "class", "example": {"text": f"t{i}"}, "choices": ["a", "b"]} for i in (1, 2)]
    write_queries(tmp_path, 1, items)
    server = Server(tmp_path).start()
    serve_dir.append(server)
    _sign_in(browser, server.url, "ann")
    _keys(browser, "1")
    _wait(browser, lambda d: _item(d) == "2")
    write_queries(tmp_path, 2, [{"index": 7, "kind": "yesno", "question": "Is it a kind of bird?"}])
    _wait(browser, lambda d: d.find_element(By.ID, "banner").is_displayed(), timeout=10)
    assert "Round 2's queries arrived (1 items)" in browser.find_element(By.ID, "banner").text
    assert _item(browser) == "2"  # the open item stays until the person moves
    browser.find_element(By.ID, "go-round").click()
    _wait(browser, lambda d: _item(d) == "7")
    assert browser.find_element(By.CSS_SELECTOR, "#question em").text == "bird"
    _keys(browser, "n")
    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())
    assert _answers(tmp_path, 2) == [{"index": 7, "label": "no", "worker": "ann"}]


def test_relabel_items_carry_a_badge_and_skip_their_earlier_annotators(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.by import By

    choices = ["cat", "dog"]
    write_queries(
        tmp_path,
        1,
        [
            {"index": 1, "kind": "class", "example": {"text": "new"}, "choices": choices},
            {"index": 2, "kind": "class", "example": {"text": "again"}, "choices": choices,
             "relabel": True, "answered_by": ["bo", "<b>cy</b>"]},
            {"index": 3, "kind": "class", "example": {"text": "ann's"}, "choices": choices,
             "relabel": True, "answered_by": ["ann"]},
            {"index": 4, "kind": "class", "example": {"text": "who?"}, "choices": choices, "relabel": True},
        ],
    )  # fmt: skip
    server = Server(tmp_path).start()
    serve_dir.append(server)
    _sign_in(browser, server.url, "ann")
    badge = browser.find_element(By.ID, "relabel")
    assert _item(browser) == "1" and not badge.is_displayed()  # a new item: no badge
    _keys(browser, "1")
    _wait(browser, lambda d: _item(d) == "2")
    assert badge.is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "#relabel .badge").text.lower() == "relabel"
    assert "answered before by bo, <b>cy</b>" in badge.text  # names as text, never HTML
    assert not browser.find_elements(By.CSS_SELECTOR, "#relabel b")
    _shot(browser, tmp_path, "relabel")
    _keys(browser, "2")
    _wait(browser, lambda d: _item(d) == "4")  # item 3 is ann's own earlier label: someone else answers it
    assert "earlier annotators not recorded" in badge.text
    _keys(browser, "1")
    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())

    browser.find_element(By.ID, "change-name").click()  # bo takes over the same page
    field = browser.find_element(By.ID, "name-input")
    field.clear()
    field.send_keys("bo")
    browser.find_element(By.ID, "name-ok").click()
    _wait(browser, lambda d: _item(d) == "3")  # 1, 2 and 4 have their one answer; 3 was ann's before
    assert "answered before by ann" in badge.text and "you answered it before" not in badge.text
    _keys(browser, "2")
    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())
    assert [(a["index"], a["label"], a["worker"]) for a in _answers(tmp_path)] == [
        (1, "cat", "ann"), (2, "dog", "ann"), (4, "cat", "ann"), (3, "dog", "bo"),
    ]  # fmt: skip
