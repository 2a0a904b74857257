"""The rendered process pages match the runbooks the engine executes."""

from __future__ import annotations

from orchestrator.docs_render import main, pages
from runbooks import all_runbooks


def test_every_runbook_has_an_up_to_date_page() -> None:
    # a runbook for either model (model unset) is one page, listed once per model
    books = {id(b): b for b in all_runbooks().values()}
    assert len(pages()) == len(books) >= 3
    assert main(["--check"]) == 0, "run: python -m orchestrator.docs_render"


def test_abort_paths_reference_existing_steps() -> None:
    for book in all_runbooks().values():
        ids = {s.id for s in book.steps}
        for abort in book.abort:
            assert set(abort.from_) <= ids, (book.kind, abort.id)
        # the last step (withdraw) can never be aborted: the predecessor is going
        assert not book.abort_path(book.steps[-1].id)
