"""The LLM side of the trainer: tokenizer, tiny default model, sampler, scoring pass, critic.

Works with any Hugging Face ``AutoModelForCausalLM`` + tokenizer (:func:`load_policy`); the
embedded default is a tiny Qwen2 model with a byte-level BPE tokenizer trained offline; named
pretrained models that ship offline (``smollm2-135m``) come from :func:`load_pretrained`, and
LoRA adapters from :func:`apply_lora`.
"""

from aem.policy.lora import LoraSpec, adapter_free_view, apply_lora, has_lora, merged_copy
from aem.policy.model import frozen_reference, load_policy, save_policy
from aem.policy.pretrained import PRETRAINED, load_pretrained
from aem.policy.rows import left_pad, position_ids_from_mask
from aem.policy.runner import CriticRunner, PolicyRunner, compile_body
from aem.policy.sampling import GenerationOutput, SamplingConfig, generate
from aem.policy.scoring import ScoreOutput, score
from aem.policy.session import DecodingSession
from aem.policy.tiny import build_tiny_model, tiny_config
from aem.policy.tokenizer import AgentTokenIds, build_tokenizer, single_token_id
from aem.policy.value import CriticModel, ValueHead

__all__ = [
    "PRETRAINED",
    "AgentTokenIds",
    "CriticModel",
    "CriticRunner",
    "DecodingSession",
    "GenerationOutput",
    "LoraSpec",
    "PolicyRunner",
    "SamplingConfig",
    "ScoreOutput",
    "ValueHead",
    "adapter_free_view",
    "apply_lora",
    "build_tiny_model",
    "build_tokenizer",
    "compile_body",
    "frozen_reference",
    "generate",
    "has_lora",
    "left_pad",
    "load_policy",
    "load_pretrained",
    "merged_copy",
    "position_ids_from_mask",
    "save_policy",
    "score",
    "single_token_id",
    "tiny_config",
]
