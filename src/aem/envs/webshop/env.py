"""WebShop as a :class:`~aem.envs.base.TextEnv`: WebShop's text-mode shopping session, offline.

Reproduces ``WebAgentTextEnv`` (text observation mode) with its ``SimServer`` page logic over a
seeded catalogue: ``search[query]`` from the search page, ``click[button]`` with the button
text lower-cased (option values as listed), ``Buy Now`` ends the episode and scores the
purchase with WebShop's ``get_reward``. The training reward is the verl-agent wrapper's:
``success_reward`` if the score is exactly 1 else 0 (``reward_mode="success"``), or the raw
score (``reward_mode="score"``); ``info["task_score"]`` always holds the raw score.

``info["available_actions"]`` is WebShop's ``{"has_search_bar": bool, "clickables": [...]}``;
``info["admissible_commands"]`` lists concrete actions the way verl-agent's prompt does:
``"search[<your query>]"`` when the page has the search bar (replace ``<your query>`` with any
keywords), then ``click[<clickable>]`` for each clickable except the search button (WebShop's
step refuses ``click[search]``).
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any

from aem.envs.base import StepResult, TextEnv
from aem.envs.webshop import pages
from aem.envs.webshop.catalog import SPLITS, Catalogue, Goal, Product, build_catalogue
from aem.envs.webshop.reward import RewardBreakdown, get_reward
from aem.envs.webshop.search import ProductSearch

SEARCH_PLACEHOLDER = "search[<your query>]"
REWARD_MODES: tuple[str, ...] = ("success", "score")
_ACTION = re.compile(r"(.+)\[(.+)\]")


def parse_action(action: str) -> tuple[str, str | None]:
    """``"click[Buy Now]"`` -> ``("click", "Buy Now")``; no brackets -> ``(action, None)``.

    WebShop's ``parse_action`` (a prefix match of ``name[argument]``), after stripping outer
    whitespace.
    """
    match = _ACTION.match(action.strip())
    if match is None:
        return action, None
    return match.group(1), match.group(2)


@lru_cache(maxsize=4)
def load_world(
    num_products: int, catalog_seed: int, goals_per_product: int
) -> tuple[Catalogue, ProductSearch]:
    """The catalogue and its search index, built once per configuration and shared."""
    catalogue = build_catalogue(num_products, catalog_seed, goals_per_product)
    return catalogue, ProductSearch(catalogue.products)


class WebShopEnv(TextEnv):
    """Offline WebShop: find and buy the product an instruction describes.

    ``split`` picks the goal set ("train", "valid", "test"); ``num_products``,
    ``catalog_seed`` and ``goals_per_product`` fix the catalogue (built once and shared);
    ``max_steps`` (15, the paper's WebShop budget) truncates the episode; ``reward_mode`` and
    ``success_reward`` set the Buy Now reward; ``search_anywhere=True`` keeps WebShop's
    text-env behaviour of accepting ``search[...]`` on every page (only the search page
    advertises it), ``False`` accepts it on the search page only; ``seed`` seeds the goal draw
    of ``reset()`` calls made without a seed.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        num_products: int = 1000,
        catalog_seed: int = 0,
        goals_per_product: int = 3,
        max_steps: int = 15,
        reward_mode: str = "success",
        success_reward: float = 10.0,
        search_anywhere: bool = True,
        seed: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not success_reward > 0.0:
            raise ValueError(f"success_reward must be > 0, got {success_reward!r}")
        self.split = split
        self.max_steps = max_steps
        self.reward_mode = reward_mode
        self.success_reward = float(success_reward)
        self.search_anywhere = search_anywhere
        self.catalogue, self.engine = load_world(num_products, catalog_seed, goals_per_product)
        self.goals: tuple[Goal, ...] = self.catalogue.goals[split]
        self._rng = random.Random(seed)
        self._goal: Goal | None = None
        self._goal_index = -1
        self._page = pages.done_page(0.0)
        self._hits: tuple[Product, ...] = ()
        self._result_page = 1
        self._product: Product | None = None
        self._options: dict[str, str] = {}
        self._steps = 0
        self._over = True

    @property
    def goal(self) -> Goal:
        """The current episode's goal (for scripted experts and analysis, not for the agent)."""
        if self._goal is None:
            raise RuntimeError("call reset() before reading the goal")
        return self._goal

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Pick a goal of the split (``options={"goal_index": i}``, else drawn from ``seed``)."""
        options = dict(options or {})
        unknown = set(options) - {"goal_index"}
        if unknown:
            raise ValueError(f"options keys must be in {{'goal_index'}}, got {sorted(unknown)}")
        if "goal_index" in options:
            index = int(options["goal_index"])
            if not 0 <= index < len(self.goals):
                raise ValueError(
                    f"goal_index must be in [0, {len(self.goals)}), got {options['goal_index']!r}"
                )
        else:
            rng = random.Random(seed) if seed is not None else self._rng
            index = rng.randrange(len(self.goals))
        self._goal_index = index
        self._goal = self.goals[index]
        self._steps = 0
        self._over = False
        self._to_search_page()
        return self._page.text, self._info(valid=True)

    def step(self, action: str) -> StepResult:
        """Carry out ``search[...]`` or ``click[...]``; anything else leaves the page unchanged."""
        if self._goal is None or self._over:
            raise RuntimeError("the episode is over (or never started); call reset()")
        self._steps += 1
        name, argument = parse_action(action)
        argument = argument.lower() if argument is not None else None
        breakdown: RewardBreakdown | None = None
        valid = True
        if name == "search" and argument and (self._page.has_search_bar or self.search_anywhere):
            self._search(argument)
        elif name == "click" and argument in self._page.clickables and argument != "search":
            breakdown = self._click(argument)
        else:
            valid = False
        terminated = breakdown is not None
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        score = breakdown.score if breakdown is not None else 0.0
        info = self._info(valid=valid, score=score)
        if breakdown is not None:
            info["reward_breakdown"] = breakdown.as_dict()
        return self._page.text, self._reward(score, terminated), terminated, truncated, info

    def _reward(self, score: float, terminated: bool) -> float:
        if not terminated:
            return 0.0
        if self.reward_mode == "score":
            return score
        return self.success_reward if score == 1.0 else 0.0

    def _info(self, valid: bool, score: float = 0.0) -> dict[str, Any]:
        goal = self.goal
        page = self._page
        commands = [SEARCH_PLACEHOLDER] if page.has_search_bar else []
        commands += [f"click[{name}]" for name in page.clickables if name != "search"]
        return {
            "admissible_commands": commands,
            "available_actions": {
                "has_search_bar": page.has_search_bar,
                "clickables": list(page.clickables),
            },
            "won": score == 1.0,
            "task_score": score,
            "task_type": goal.category,
            "task": goal.instruction_text,
            "valid": valid,
            "goal_index": self._goal_index,
            "page": page.kind,
        }

    # --- page transitions (SimServer.receive) -------------------------------------------

    def _to_search_page(self) -> None:
        self._hits = ()
        self._result_page = 1
        self._product = None
        self._options = {}
        self._page = pages.search_page(self.goal.instruction_text)

    def _search(self, keywords: str) -> None:
        self._hits = self.engine.search(keywords)
        self._show_results(1)

    def _show_results(self, page: int) -> None:
        self._result_page = page
        self._product = None
        self._options = {}
        self._page = pages.results_page(self.goal.instruction_text, self._hits, page)

    def _show_item(self) -> None:
        assert self._product is not None
        self._page = pages.item_page(self.goal.instruction_text, self._product)

    def _click(self, button: str) -> RewardBreakdown | None:
        """Follow a click; return the purchase score breakdown on Buy Now."""
        kind = self._page.kind
        if button == pages.BUY_NOW.lower():
            return self._buy()
        if button == pages.BACK_TO_SEARCH.lower():
            self._to_search_page()
        elif button == pages.NEXT_PAGE.lower():
            self._show_results(self._result_page + 1)
        elif button == pages.PREV_PAGE.lower():
            if kind == "results":
                self._show_results(self._result_page - 1)
            elif kind == "item":
                self._show_results(self._result_page)
            else:
                self._show_item()
        elif button in (name.lower() for name in pages.SUB_PAGES):
            assert self._product is not None
            self._page = pages.sub_page(
                self.goal.instruction_text, self._product, button.capitalize()
            )
        elif kind == "results":
            self._product = self.catalogue.by_asin[button.upper()]
            self._show_item()
        else:
            assert self._product is not None
            option_name = next(name for name, values in self._product.options if button in values)
            self._options[option_name] = button
            self._show_item()
        return None

    def _buy(self) -> RewardBreakdown:
        assert self._product is not None
        breakdown = get_reward(self._product, self.goal, self._product.price, self._options)
        self._page = pages.done_page(breakdown.score)
        return breakdown
