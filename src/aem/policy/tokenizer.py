"""The embedded tokenizer: byte-level BPE trained offline, with the agent tags as single tokens.

It is a ``Qwen2Tokenizer`` (NFC normalisation, Qwen2's pre-tokenizer regex, byte-level BPE)
with a vocabulary trained on the given texts, so ``AutoTokenizer.from_pretrained`` rebuilds it
exactly next to the tiny Qwen2 model (transformers 5 picks the tokenizer class from the model
type). Byte-level BPE starts from the 256 byte symbols, so every NFC string encodes and decodes
back exactly. ``pad`` and ``eos`` are special tokens (dropped by ``skip_special_tokens=True``);
the agent tags ``<think>``, ``</think>``, ``<action>``, ``</action>`` are ordinary added tokens,
so they survive decoding and stopping at ``</action>`` is a single-token check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen2Tokenizer

from aem.checks import require_int_at_least

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ACTION_OPEN = "<action>"
ACTION_CLOSE = "</action>"
AGENT_TAGS = (THINK_OPEN, THINK_CLOSE, ACTION_OPEN, ACTION_CLOSE)
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN)
_MIN_VOCAB = 256 + len(SPECIAL_TOKENS) + len(AGENT_TAGS)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer of ``vocab_size`` entries (fewer if the corpus runs
    out of pairs to merge) on ``texts``: ids 0 and 1 are pad and eos, the last four are the
    agent tags.

    BPE training is a deterministic function of the corpus, so there is no seed. Prompts are
    plain text: no chat template, no BOS token; padding is on the left (for generation).
    """
    require_int_at_least("vocab_size", vocab_size, _MIN_VOCAB)
    if isinstance(texts, str):
        raise ValueError("texts must be an iterable of strings, got a single str")

    qwen2_pipeline = Qwen2Tokenizer().backend_tokenizer
    core = Tokenizer(models.BPE())
    core.normalizer = qwen2_pipeline.normalizer
    core.pre_tokenizer = qwen2_pipeline.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(AGENT_TAGS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_checked_texts(texts), trainer=trainer)
    trained = json.loads(core.to_str())["model"]

    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(pair) for pair in trained["merges"]],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in AGENT_TAGS])
    return tokenizer


def _checked_texts(texts: Iterable[str]) -> Iterable[str]:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] must be a str, got {type(text).__name__}")
        yield text


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int | None:
    """The id of ``text`` if the tokenizer encodes it as exactly one token, else ``None``."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


@dataclass(frozen=True)
class AgentTokenIds:
    """Ids of the tokens the sampler and the agent need; a tag is ``None`` when the tokenizer
    splits it into several tokens (e.g. a pretrained vocabulary without the tags)."""

    pad: int
    eos: int
    think_open: int | None
    think_close: int | None
    action_open: int | None
    action_close: int | None

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> AgentTokenIds:
        """Read the ids from ``tokenizer``; it must define pad and eos tokens."""
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                "tokenizer must define pad_token_id and eos_token_id, got "
                f"pad={tokenizer.pad_token_id!r}, eos={tokenizer.eos_token_id!r}"
            )
        return cls(
            pad=int(tokenizer.pad_token_id),
            eos=int(tokenizer.eos_token_id),
            think_open=single_token_id(tokenizer, THINK_OPEN),
            think_close=single_token_id(tokenizer, THINK_CLOSE),
            action_open=single_token_id(tokenizer, ACTION_OPEN),
            action_close=single_token_id(tokenizer, ACTION_CLOSE),
        )
