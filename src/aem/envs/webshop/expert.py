"""A scripted expert that knows the goal: search, find the target, choose options, buy.

It searches the instruction (without the price clause), pages through the hits looking for the
target asin, and if the target is not among them goes back and searches the target's title.
On the item page it clicks each goal option value, then Buy Now. It reads only
``info["available_actions"]`` and the goal, so it works from any page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aem.envs.webshop import pages
from aem.envs.webshop.catalog import Goal

PRICE_CLAUSE = ", and price lower than"
MAX_RESULT_PAGES = 5


def instruction_query(goal: Goal) -> str:
    """The instruction text up to its price clause."""
    return goal.instruction_text.split(PRICE_CLAUSE)[0]


class WebShopExpert:
    """Chooses the next action for ``goal`` from the current ``info``."""

    def __init__(self, goal: Goal) -> None:
        self.goal = goal
        self._queries = [instruction_query(goal), goal.name.lower()]
        self._searches = 0
        self._pages_seen = 0
        self._chosen: set[str] = set()

    def act(self, info: dict[str, Any]) -> str:
        """The next action string."""
        available = info["available_actions"]
        clickables: list[str] = available["clickables"]
        if available["has_search_bar"]:
            return self._search()
        target = self.goal.asin.lower()
        if target in clickables:
            return f"click[{target}]"
        next_page = pages.NEXT_PAGE.lower()
        if next_page in clickables:
            self._pages_seen += 1
            if self._pages_seen < MAX_RESULT_PAGES:
                return f"click[{next_page}]"
            return f"click[{pages.BACK_TO_SEARCH.lower()}]"
        if pages.BUY_NOW.lower() in clickables:
            for value in self.goal.goal_options:
                if value in clickables and value not in self._chosen:
                    self._chosen.add(value)
                    return f"click[{value}]"
            return f"click[{pages.BUY_NOW.lower()}]"
        return f"click[{pages.PREV_PAGE.lower()}]"

    def _search(self) -> str:
        query = self._queries[min(self._searches, len(self._queries) - 1)]
        self._searches += 1
        self._pages_seen = 0
        return f"search[{query}]"


def episode_expert(env: Any) -> Callable[[dict[str, Any]], str]:
    """The expert of the episode ``env`` was just reset to (it reads the hidden goal): the
    WebShop warm-start expert."""
    return WebShopExpert(env.goal).act
