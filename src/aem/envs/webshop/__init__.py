"""Offline WebShop: seeded catalogue, BM25 search, WebShop's text pages and purchase score.

``aem.envs.make("webshop", split="train")`` builds :class:`WebShopEnv`.
"""

from aem.envs.registry import register
from aem.envs.webshop.bench import benchmark_webshop
from aem.envs.webshop.catalog import Catalogue, Goal, Product, build_catalogue
from aem.envs.webshop.env import WebShopEnv, load_world, parse_action
from aem.envs.webshop.expert import WebShopExpert, episode_expert, instruction_query
from aem.envs.webshop.reward import RewardBreakdown, get_reward
from aem.envs.webshop.search import ProductSearch

register(
    "webshop",
    WebShopEnv,
    eval_split="valid",
    role="You are an expert shopping agent browsing the WebShop website.",
    episode_expert=episode_expert,
)

__all__ = [
    "Catalogue",
    "Goal",
    "Product",
    "ProductSearch",
    "RewardBreakdown",
    "WebShopEnv",
    "WebShopExpert",
    "benchmark_webshop",
    "build_catalogue",
    "get_reward",
    "instruction_query",
    "load_world",
    "parse_action",
]
